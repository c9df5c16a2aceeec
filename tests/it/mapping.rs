//! `database.mapping` refused before anything is consumed (issue 14):
//! `check-config` and `run` against real PostgreSQL tables, through the
//! binary, each refusal naming the column and the fix.

use std::time::Duration;

use govsync::config::RawConfig;

use crate::common::harness::Env;

/// CRM.CUST_BASE's shape, plus a DATE column, and a copy without a key.
const DDL: [&str; 2] = [
    "CREATE TABLE cust_base (cust_no VARCHAR(32) PRIMARY KEY, addr_line VARCHAR(200), \
     mobile_no VARCHAR(20), id_no VARCHAR(18), data_qlty NUMERIC(3,2), chk_status VARCHAR(32), \
     review_ind CHAR(1), upd_ts TIMESTAMP(0), opened DATE)",
    "CREATE TABLE cust_nokey (cust_no VARCHAR(32), addr_line VARCHAR(200), mobile_no VARCHAR(20), \
     id_no VARCHAR(18), data_qlty NUMERIC(3,2), chk_status VARCHAR(32), review_ind CHAR(1), \
     upd_ts TIMESTAMP(0))",
];

/// The mapping of cust_base, with allow-lists that name mapped fields only.
fn cust_base(env: &Env) -> RawConfig {
    let mut raw = env.raw.clone();
    raw.database.target_table = "cust_base".into();
    let m = &mut raw.database.mapping;
    m.key = "CUST_NO".into();
    m.name = String::new();
    m.version = String::new();
    m.last_update = "UPD_TS".into();
    m.zone = "+08:00".into();
    m.columns = [
        ("address", "ADDR_LINE"),
        ("id_card", "ID_NO"),
        ("phone", "MOBILE_NO"),
        ("quality_score", "DATA_QLTY"),
        ("validation_status", "CHK_STATUS"),
        ("review_flag", "REVIEW_IND"),
    ]
    .into_iter()
    .map(|(f, c)| (f.to_string(), c.to_string()))
    .chain(
        [
            "geo_lat",
            "geo_lon",
            "geo_accuracy",
            "carrier_info",
            "review_priority",
            "last_governance_time",
        ]
        .map(|f| (f.to_string(), String::new())),
    )
    .collect();
    let allow = [
        (
            "address",
            &["address", "quality_score", "validation_status"][..],
        ),
        (
            "id_card",
            &[
                "id_card",
                "quality_score",
                "validation_status",
                "review_flag",
            ][..],
        ),
        (
            "phone",
            &["phone", "quality_score", "validation_status"][..],
        ),
    ];
    raw.rules.allow = allow
        .into_iter()
        .map(|(d, cols)| (d.to_string(), cols.iter().map(|c| c.to_string()).collect()))
        .collect();
    raw
}

/// `govsync check-config` on `raw`: exit code and output.
fn check_config(env: &Env, raw: &RawConfig) -> (i32, String) {
    let path = env.write_config(raw);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_govsync"))
        .args(["check-config", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn assert_refused(env: &Env, raw: &RawConfig, says: &[&str]) -> String {
    let (code, text) = check_config(env, raw);
    assert_eq!(code, 1, "check-config refuses: {text}");
    for s in says {
        assert!(text.contains(s), "the output says {s:?}:\n{text}");
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_and_run_refuse_a_mapping_the_table_does_not_fit() {
    let env = Env::new("mapping", 1).await;
    env.migrate().await;
    for ddl in DDL {
        sqlx::query(ddl).execute(&env.pg).await.unwrap();
    }

    // The mapping that fits: the columns as the catalog spells them.
    let good = cust_base(&env);
    let (code, text) = check_config(&env, &good);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(
            "target table cust_base fits database.mapping (key cust_no; address -> addr_line"
        ),
        "{text}"
    );
    assert!(text.contains("version kept in govsync_row_state"), "{text}");

    // A mapped column that does not exist.
    let mut raw = good.clone();
    raw.database
        .mapping
        .columns
        .insert("address".into(), "ADDR".into());
    assert_refused(
        &env,
        &raw,
        &[
            "database.mapping.columns.address = \"ADDR\": cust_base has no column ADDR",
            "name one of its columns or set it to \"\"",
        ],
    );

    // A boolean mapped to a DATE.
    let mut raw = good.clone();
    raw.database
        .mapping
        .columns
        .insert("review_flag".into(), "OPENED".into());
    assert_refused(
        &env,
        &raw,
        &[
            "database.mapping.columns.review_flag = \"OPENED\": column opened is date",
            "no adapter writes review_flag into it",
            "a one-character column ('Y'/'N')",
        ],
    );

    // A key without a unique index.
    let mut raw = good.clone();
    raw.database.target_table = "cust_nokey".into();
    assert_refused(
        &env,
        &raw,
        &[
            "database.mapping.key = \"CUST_NO\": column cust_no has no primary key or unique index",
            "govsync never alters the table",
        ],
    );

    // An allow-listed field with no mapping: the config itself is refused.
    let mut raw = good.clone();
    raw.rules
        .allow
        .get_mut("address")
        .unwrap()
        .push("geo_lat".into());
    assert_refused(
        &env,
        &raw,
        &[
            "rules.allow.address",
            "`geo_lat` is allowed but maps to no column of the target table",
            "database.mapping.columns.geo_lat",
        ],
    );

    // `run` stops before consuming: no watermark row, no consumer offsets.
    let mut raw = good.clone();
    raw.database
        .mapping
        .columns
        .insert("phone".into(), "MOBILE".into());
    let log = env.log_path("run");
    let proc = env.spawn_binary(&raw, &[], &log);
    let status = proc.wait(Duration::from_secs(60)).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "run refuses: {text}");
    assert!(
        text.contains(
            "database.mapping.columns.phone = \"MOBILE\": cust_base has no column MOBILE"
        ),
        "{text}"
    );
    assert_eq!(env.count("SELECT count(*) FROM govsync_watermark").await, 0);
    assert!(
        env.committed().values().all(Option::is_none),
        "nothing consumed: {:?}",
        env.committed()
    );
}
