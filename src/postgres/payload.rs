//! The notifications' payloads: JSON written by `tagcache_flush`, read
//! here. Anything else on the channel is rejected (counted and logged by
//! the listener), never a panic.

use serde::Deserialize;

/// What one notification asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Message {
    /// Invalidate the entries carrying any of these tags.
    Tags {
        /// The tags (deduplicated by the SQL that wrote them).
        tags: Vec<String>,
        /// Mark them stale rather than invalid.
        soft: bool,
    },
    /// Invalidate every entry.
    All,
}

/// The payload as written: `{"v":1,"soft":false,"tags":[...]}` or
/// `{"v":1,"all":true}`. Unknown fields are ignored, so a later version
/// may add some.
#[derive(Deserialize)]
struct Wire {
    v: u64,
    #[serde(default)]
    soft: bool,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default)]
    all: bool,
}

/// Reads a payload; the error says what is wrong with it, for the log.
pub(crate) fn parse(payload: &str) -> Result<Message, String> {
    let wire: Wire =
        serde_json::from_str(payload).map_err(|e| format!("not a tagcache payload: {e}"))?;
    if wire.v != 1 {
        return Err(format!("unknown payload version {}", wire.v));
    }
    match (wire.all, wire.tags) {
        (true, _) => Ok(Message::All),
        (false, Some(tags)) => Ok(Message::Tags {
            tags,
            soft: wire.soft,
        }),
        (false, None) => Err("neither `tags` nor `all`".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_sql_writes() {
        assert_eq!(
            parse(r#"{"v":1,"soft":false,"tags":["session:1","teacher:\"7\""]}"#),
            Ok(Message::Tags {
                tags: vec!["session:1".into(), "teacher:\"7\"".into()],
                soft: false
            })
        );
        assert_eq!(
            parse(r#"{"v":1,"soft":true,"tags":[]}"#),
            Ok(Message::Tags {
                tags: vec![],
                soft: true
            })
        );
        assert_eq!(parse(r#"{"v":1,"all":true}"#), Ok(Message::All));
        assert_eq!(
            parse(r#"{"v":1,"tags":["a"],"later":{"x":1}}"#),
            Ok(Message::Tags {
                tags: vec!["a".into()],
                soft: false
            })
        );
    }

    #[test]
    fn rejects_anything_else() {
        for bad in [
            "",
            "teacher:7",
            "{}",
            "[1,2]",
            r#"{"v":2,"tags":["a"]}"#,
            r#"{"v":1}"#,
            r#"{"v":1,"tags":"a"}"#,
            r#"{"v":1,"tags":[1]}"#,
            r#"{"v":1,"soft":"yes","tags":["a"]}"#,
            r#"{"v":-1,"all":true}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
