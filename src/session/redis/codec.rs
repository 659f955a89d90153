//! A session [`Record`] as the fields of its Redis hash, and back from the lookup's `HMGET`.
//!
//! **A hash, not JSON**: the touch script updates a single field (`seen`) in place, without a
//! JSON library in Lua or a read-modify-write race between instances. A lookup reads the fields
//! with one `HMGET` in [`FIELDS`] order and gets bare values back, no field names.
//!
//! A record this build cannot read (another format version, a damaged field) decodes to an
//! `Err` saying why; the store then treats it as absent rather than failing the request.

use redis::Value;

use crate::session::{Link, Origin, Record, RECORD_VERSION};

/// A record's hash fields, in the order [`encode`] writes them and a lookup reads them.
/// [`LINK_FIELD`] is written only for a session or code made by signing in across hosts
/// ([`Link::to_field`]), [`EXPRESS_FIELD`] only for a session taken over from express-session;
/// other records leave them out.
pub(super) const FIELDS: [&str; 9] = [
    "v",
    "user",
    "groups",
    "origin",
    "created",
    "exp",
    "seen",
    LINK_FIELD,
    EXPRESS_FIELD,
];

/// The hash field holding a record's [`Link`].
pub(super) const LINK_FIELD: &str = "x";

/// The hash field holding a taken-over express session's id ([`Record::express`]); written only
/// for those.
pub(super) const EXPRESS_FIELD: &str = "e";

/// The hash field holding an OIDC session's sealed ID token ([`Record::id_token`]). Not one of
/// [`FIELDS`]: a lookup does not read it (a kilobyte or two per request for a value
/// only logout needs); `HGET` reads it then.
pub(super) const ID_TOKEN_FIELD: &str = "t";

/// The record as hash fields, in the layout the key schema describes, in [`FIELDS`] order.
pub(super) fn encode(record: &Record) -> Vec<(&'static str, String)> {
    let origin = record.origin.as_str();
    let values = [
        record.version.to_string(),
        record.user.clone(),
        record.groups.join(","),
        origin.to_string(),
        record.created.to_string(),
        record.absolute_expiry.to_string(),
        record.last_seen.to_string(),
    ];
    let mut fields: Vec<_> = FIELDS.into_iter().zip(values).collect();
    if let Some(link) = &record.link {
        fields.push((LINK_FIELD, link.to_field()));
    }
    if let Some(express) = &record.express {
        fields.push((EXPRESS_FIELD, express.to_string()));
    }
    if let Some(token) = &record.id_token {
        fields.push((ID_TOKEN_FIELD, token.to_string()));
    }
    fields
}

/// An `HMGET` of [`FIELDS`]: their values in order, all nil for a missing record (or nil).
/// `Err` says why a present record could not be read (it is then treated as absent).
pub(super) fn decode(reply: Value) -> Result<Option<Record>, &'static str> {
    let values: [Value; FIELDS.len()] = match reply {
        Value::Nil => return Ok(None),
        Value::Array(items) => items
            .try_into()
            .map_err(|_| "unexpected number of values")?,
        _ => return Err("unexpected reply shape"),
    };
    // Every record has a version: without one there is no record (all fields nil).
    if values[0] == Value::Nil {
        return Ok(None);
    }
    let [v, user, groups, origin, created, exp, seen, link, express] = values;
    let version: u8 = text(v)?.parse().map_err(|_| "malformed version")?;
    if version != RECORD_VERSION {
        return Err("another format version");
    }
    let number = |value: Value| -> Result<u64, &'static str> {
        text(value)?.parse().map_err(|_| "malformed number")
    };
    let groups = text(groups)?;
    let origin = Origin::parse(&text(origin)?).ok_or("unknown origin")?;
    let link = match link {
        Value::Nil => None,
        value => Some(Box::new(
            Link::from_field(&text(value)?).ok_or("malformed link")?,
        )),
    };
    Ok(Some(Record {
        version,
        user: text(user)?,
        groups: if groups.is_empty() {
            Vec::new()
        } else {
            groups.split(',').map(str::to_string).collect()
        },
        origin,
        created: number(created)?,
        absolute_expiry: number(exp)?,
        last_seen: number(seen)?,
        link,
        id_token: None,
        express: match express {
            Value::Nil => None,
            value => Some(text(value)?.into_boxed_str()),
        },
    }))
}

/// A field's value; a missing field (nil) is an unreadable record.
fn text(value: Value) -> Result<String, &'static str> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes).map_err(|_| "field is not UTF-8"),
        Value::SimpleString(s) => Ok(s),
        Value::Nil => Err("missing field"),
        _ => Err("field is not a string"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::TEST_TIMEOUTS as T;

    /// What the lookup's HMGET returns for `record` (nil for a field not written).
    fn reply(record: &Record) -> Value {
        let written = encode(record);
        Value::Array(
            FIELDS
                .iter()
                .map(|f| match written.iter().find(|(k, _)| k == f) {
                    Some((_, v)) => Value::BulkString(v.clone().into_bytes()),
                    None => Value::Nil,
                })
                .collect(),
        )
    }

    #[test]
    fn records_round_trip_through_hash_fields() {
        for groups in [
            vec![],
            vec!["admin".to_string()],
            vec!["a".into(), "b".into()],
        ] {
            let mut r = Record::new("alice".into(), groups, Origin::Handoff, 5, &T);
            r.last_seen = 7;
            assert_eq!(decode(reply(&r)), Ok(Some(r.clone())));
            r.link = Some(Box::new(crate::session::Link {
                family: "ab".repeat(32),
                code: None,
            }));
            assert_eq!(decode(reply(&r)), Ok(Some(r.clone())));
            r.origin = Origin::Express;
            r.express = Some("x4Fa-id".into());
            assert_eq!(decode(reply(&r)), Ok(Some(r)));
        }
        assert_eq!(decode(Value::Nil), Ok(None));
        assert_eq!(
            decode(Value::Array(vec![Value::Nil; FIELDS.len()])),
            Ok(None),
            "a missing record"
        );
    }

    #[test]
    fn unreadable_records_are_reported_not_decoded() {
        let mut r = Record::new("alice".into(), vec![], Origin::Login, 5, &T);
        r.version = RECORD_VERSION + 1;
        assert!(decode(reply(&r)).is_err());
        assert!(decode(Value::Array(vec![Value::BulkString(b"1".to_vec())])).is_err());
        assert!(decode(Value::Int(1)).is_err());
        r.version = RECORD_VERSION;
        let Value::Array(mut values) = reply(&r) else {
            unreachable!()
        };
        values[1] = Value::Nil;
        assert!(decode(Value::Array(values)).is_err(), "missing user");
    }
}
