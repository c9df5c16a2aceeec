//! Checks on a standardised Chinese address: it must carry the province,
//! city and district levels (省/自治区 + 市/自治州/地区/盟 + 区/县/市/旗, or a
//! municipality 北京市/上海市/天津市/重庆市 followed by its 区/县).

use super::columns::{Column, Value};
use super::model::Event;
use super::rules::{Findings, RuleError, rule};

const MUNICIPALITIES: [&str; 4] = ["北京市", "上海市", "天津市", "重庆市"];
const SARS: [&str; 2] = ["香港特别行政区", "澳门特别行政区"];

/// China's bounding box (mainland, Hainan's islands, Taiwan, the SARs).
pub const LAT_RANGE: (f64, f64) = (3.8, 53.6);
pub const LON_RANGE: (f64, f64) = (73.4, 135.1);

/// Returns the rest of `s` after the first of `suffixes` that ends a
/// non-empty prefix.
fn after_level<'a>(s: &'a str, suffixes: &[&str]) -> Option<&'a str> {
    suffixes
        .iter()
        .filter_map(|suf| {
            s.find(suf)
                .filter(|&i| i > 0)
                .map(|i| (i, &s[i + suf.len()..]))
        })
        .min_by_key(|(i, _)| *i)
        .map(|(_, rest)| rest)
}

/// `Ok` when the address has all three administrative levels.
pub fn check_levels(addr: &str) -> Result<(), String> {
    let addr = addr.trim();
    if SARS.iter().any(|s| addr.starts_with(s)) {
        return Ok(());
    }
    let rest = if let Some(m) = MUNICIPALITIES.iter().find(|m| addr.starts_with(*m)) {
        &addr[m.len()..]
    } else {
        let after_province =
            after_level(addr, &["省", "自治区"]).ok_or("has no province level (…省 or …自治区)")?;
        after_level(after_province, &["市", "自治州", "地区", "盟"])
            .ok_or("has no city level (…市, …自治州, …地区 or …盟)")?
    };
    let after_district = after_level(rest, &["区", "县", "市", "旗"])
        .ok_or("has no district level (…区, …县, …市 or …旗)")?;
    if after_district.trim().is_empty() {
        return Err("ends at the district: no street address".into());
    }
    Ok(())
}

pub fn in_china(lat: f64, lon: f64) -> bool {
    (LAT_RANGE.0..=LAT_RANGE.1).contains(&lat) && (LON_RANGE.0..=LON_RANGE.1).contains(&lon)
}

/// The address rules: the standardised address has all three levels, the
/// coordinates lie in China.
pub(super) fn apply_rules(e: &Event, found: &mut Findings) -> Result<(), RuleError> {
    let g = &e.governance_result;
    let std_addr = g.standardized_address.as_deref().unwrap_or_default();
    check_levels(std_addr).map_err(|m| {
        rule(
            "governance_result.standardized_address",
            format!("the standardised address {m}"),
        )
    })?;
    if let Some(geo) = &g.geocoding_result
        && let (Some(lat), Some(lon)) = (geo.latitude, geo.longitude)
        && !in_china(lat, lon)
    {
        return Err(rule(
            "governance_result.geocoding_result",
            format!("({lat}, {lon}) is outside China's bounds"),
        ));
    }
    if let Some(a) = &e.original_data.address {
        found
            .seen_values
            .push((Column::Address, Value::Text(a.clone())));
    }
    found.data_value = Some((Column::Address, Value::Text(std_addr.trim().to_string())));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert!(check_levels("江苏省南京市玄武区中山路123号").is_ok());
        assert!(check_levels("江苏省南京市建邺区江东中路368号").is_ok());
        assert!(check_levels("北京市朝阳区建国路88号").is_ok());
        assert!(check_levels("新疆维吾尔自治区乌鲁木齐市天山区解放南路1号").is_ok());
        assert!(check_levels("江苏省苏州市昆山市前进西路1号").is_ok());
        assert!(check_levels("内蒙古自治区锡林郭勒盟锡林浩特市额尔敦路1号").is_ok());
        assert!(
            check_levels("江苏南京玄武区中山路123").is_err(),
            "the seed's raw input"
        );
        assert!(check_levels("南京市建邺区江东中路").is_err());
        assert!(check_levels("江苏省南京市中山路").is_err());
        assert!(check_levels("江苏省南京市玄武区").is_err());
    }

    #[test]
    fn bounds() {
        assert!(in_china(32.0581, 118.7969));
        assert!(!in_china(48.85, 2.35));
        assert!(!in_china(32.0, -118.0));
    }
}
