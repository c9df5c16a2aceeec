//! Kafka messages as govsync sees them: one consumed ([`RawMessage`]), one
//! to publish ([`OutMessage`]), and the outbox's encoding of their headers.

use crate::output::headers;

/// A Kafka message as it was consumed: what a dead-letter message preserves.
#[derive(Debug, Clone, PartialEq)]
pub struct RawMessage {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    /// Producer or broker timestamp, milliseconds since the epoch.
    pub timestamp_ms: Option<i64>,
}

impl RawMessage {
    /// Copies a consumed message out of librdkafka.
    pub fn from_kafka(m: &impl rdkafka::message::Message) -> Self {
        use rdkafka::message::Headers;
        RawMessage {
            topic: m.topic().to_string(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            headers: m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|x| (x.key.to_string(), x.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default(),
            timestamp_ms: m.timestamp().to_millis(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }

    /// How many times this message has been replayed from the DLQ.
    pub fn replay_count(&self) -> u32 {
        self.header(headers::REPLAY_COUNT)
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }
}

/// A message to publish (review or dead-letter).
#[derive(Debug, Clone, PartialEq)]
pub struct OutMessage {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Outbox encoding of headers: `u16 name length, name, u32 value length,
/// value`, repeated. Internal to govsync's own tables.
pub fn encode_headers(h: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in h {
        out.extend_from_slice(&(k.len() as u16).to_be_bytes());
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(&(v.len() as u32).to_be_bytes());
        out.extend_from_slice(v);
    }
    out
}

pub fn decode_headers(mut b: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let kl = u16::from_be_bytes(b.get(..2)?.try_into().ok()?) as usize;
        b = &b[2..];
        let k = String::from_utf8(b.get(..kl)?.to_vec()).ok()?;
        b = &b[kl..];
        let vl = u32::from_be_bytes(b.get(..4)?.try_into().ok()?) as usize;
        b = &b[4..];
        let v = b.get(..vl)?.to_vec();
        b = &b[vl..];
        out.push((k, v));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        let h = vec![
            ("a".to_string(), vec![]),
            ("é".to_string(), vec![0, 1, 255]),
        ];
        assert_eq!(decode_headers(&encode_headers(&h)).unwrap(), h);
        assert!(decode_headers(&[0, 5, b'a']).is_none());
    }
}
