//! A session [`Record`] as the fields of its Redis hash, and back from the lookup's `HMGET`.
//!
//! **A hash, not JSON**: the touch script updates a single field (`seen`) in place, without a
//! JSON library in Lua or a read-modify-write race between instances.
//!
//! **Each value twice, once packed.** A record is written as one field per value ([`FIELDS`]:
//! what operators read with `HGETALL`, what the touch script reads, and what a doorman from
//! before the packed field reads during a rolling upgrade) and, in [`PACKED_FIELD`], every value
//! but `seen` in one string ([`pack`]). A lookup reads only [`LOOKUP_FIELDS`], the packed value
//! and `seen` (the one field that changes after creation): two values for the redis crate to
//! parse instead of nine. Its reply parser costs about 1,000 instructions per value (callgrind,
//! `benches/callgrind.sh`'s redis path), on every authenticated request. The cost is about
//! 80 bytes more per record in Redis. A record without the packed field (written by an earlier
//! doorman) is read by its fields in a second round trip ([`Lookup::Unpacked`]); those records
//! are gone within one `absolute_timeout` of the upgrade. Where both are present, the packed
//! value is the record: a field edited by hand (`HSET … groups`) shows in `HGETALL` but not
//! in lookups. Nothing but the touch script's `seen` is written after creation.
//!
//! A record this build cannot read (another format version, a damaged field) decodes to an
//! `Err` saying why; the store then treats it as absent rather than failing the request.

use std::sync::Arc;

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
    SEEN_FIELD,
    LINK_FIELD,
    EXPRESS_FIELD,
];

/// The hash field holding every value of a record but `seen`, [`pack`]ed into one string.
pub(super) const PACKED_FIELD: &str = "r";

/// The hash field holding the idle clock: the only one written after creation (the touch
/// script slides it), so the only one a lookup reads beside [`PACKED_FIELD`].
pub(super) const SEEN_FIELD: &str = "seen";

/// What a lookup reads, in this order: [`decode_lookup`]'s input.
pub(super) const LOOKUP_FIELDS: [&str; 2] = [PACKED_FIELD, SEEN_FIELD];

/// The hash field holding a record's [`Link`].
pub(super) const LINK_FIELD: &str = "x";

/// The hash field holding a taken-over express session's id ([`Record::express`]); written only
/// for those.
pub(super) const EXPRESS_FIELD: &str = "e";

/// The hash field holding an OIDC session's sealed ID token ([`Record::id_token`]). Not one of
/// [`FIELDS`]: a lookup does not read it (a kilobyte or two per request for a value
/// only logout needs); `HGET` reads it then.
pub(super) const ID_TOKEN_FIELD: &str = "t";

/// The record as hash fields, in the layout the key schema describes: [`FIELDS`] in order
/// (those it has), then [`PACKED_FIELD`], then the ID token if any.
pub(super) fn encode(record: &Record) -> Vec<(&'static str, String)> {
    let origin = record.origin.as_str();
    let values = [
        record.version.to_string(),
        record.user.to_string(),
        record.groups.join(","),
        origin.to_string(),
        record.created.to_string(),
        record.absolute_expiry.to_string(),
        record.last_seen.to_string(),
    ];
    let link = record.link.as_ref().map(|l| l.to_field());
    // The same strings again, packed: every value but `seen`.
    let [v, user, groups, origin, created, exp, _seen] = &values;
    let packed = pack([
        Some(v.as_str()),
        Some(user.as_str()),
        Some(groups.as_str()),
        Some(origin.as_str()),
        Some(created.as_str()),
        Some(exp.as_str()),
        link.as_deref(),
        record.express.as_deref(),
    ]);
    let mut fields: Vec<_> = FIELDS.into_iter().zip(values).collect();
    if let Some(link) = link {
        fields.push((LINK_FIELD, link));
    }
    if let Some(express) = &record.express {
        fields.push((EXPRESS_FIELD, express.to_string()));
    }
    fields.push((PACKED_FIELD, packed));
    if let Some(token) = &record.id_token {
        fields.push((ID_TOKEN_FIELD, token.to_string()));
    }
    fields
}

/// The values [`PACKED_FIELD`] holds, in this order; `seen` is not one of them.
const PACKED: usize = 8;

/// A record's values but `seen` in one string: each of [`PACKED`] values in [`FIELDS`] order
/// (`v`, `user`, `groups`, `origin`, `created`, `exp`, the link, the express id), as [`encode`]
/// writes their fields, as `{byte length}:{bytes}`, and an absent link or express id as `-`.
/// Lengths, not separators: a user name may hold any character.
fn pack(values: [Option<&str>; PACKED]) -> String {
    let mut packed = String::with_capacity(values.iter().flatten().map(|v| v.len() + 4).sum());
    for value in values {
        match value {
            Some(value) => {
                packed.push_str(&value.len().to_string());
                packed.push(':');
                packed.push_str(value);
            }
            None => packed.push('-'),
        }
    }
    packed
}

/// [`pack`]'s values (`None` for an absent one), or why they cannot be read.
fn unpack(mut packed: &str) -> Result<[Option<&str>; PACKED], &'static str> {
    let mut values = [None; PACKED];
    for value in &mut values {
        if let Some(rest) = packed.strip_prefix('-') {
            packed = rest;
            continue;
        }
        // The length's digits by hand: `split_once(':')` cost about 70 instructions a value,
        // more than the rest of the value's decoding.
        let digits = packed.bytes().take_while(u8::is_ascii_digit).count();
        let rest = packed[digits..]
            .strip_prefix(':')
            .ok_or("packed record cut short")?;
        let len = decimal(&packed.as_bytes()[..digits])
            .and_then(|len| usize::try_from(len).ok())
            .ok_or("malformed packed length")?;
        // `get` also refuses a length that ends inside a character.
        *value = Some(rest.get(..len).ok_or("packed value cut short")?);
        packed = &rest[len..];
    }
    if !packed.is_empty() {
        return Err("packed record too long");
    }
    Ok(values)
}

/// What a lookup's read of [`LOOKUP_FIELDS`] found.
#[derive(Debug, PartialEq)]
pub(super) enum Lookup {
    /// A record this build can read.
    Found(Record),
    /// No record.
    Absent,
    /// A record without [`PACKED_FIELD`], written by a doorman from before it: read its
    /// [`FIELDS`] instead ([`decode`]).
    Unpacked,
}

/// An `HMGET` of [`LOOKUP_FIELDS`]. `Err` says why a present record could not be read (it is
/// then treated as absent).
pub(super) fn decode_lookup(reply: Value) -> Result<Lookup, &'static str> {
    let [packed, seen] = match reply {
        Value::Nil => return Ok(Lookup::Absent),
        Value::Array(items) => {
            <[Value; 2]>::try_from(items).map_err(|_| "unexpected number of values")?
        }
        _ => return Err("unexpected reply shape"),
    };
    let packed = match (packed, &seen) {
        (Value::Nil, Value::Nil) => return Ok(Lookup::Absent),
        (Value::Nil, _) => return Ok(Lookup::Unpacked),
        (Value::BulkString(bytes), _) => bytes,
        _ => return Err("packed record is not a string"),
    };
    let packed = std::str::from_utf8(&packed).map_err(|_| "packed record is not UTF-8")?;
    let [v, user, groups, origin, created, exp, link, express] = unpack(packed)?;
    fn required(value: Option<&str>) -> Result<&str, &'static str> {
        value.ok_or("missing packed value")
    }
    let packed_number = |value: Option<&str>| -> Result<u64, &'static str> {
        decimal(required(value)?.as_bytes()).ok_or("malformed number")
    };
    let version = parse_version(required(v)?)?;
    Ok(Lookup::Found(Record {
        version,
        user: Arc::from(required(user)?),
        groups: split_groups(required(groups)?),
        origin: Origin::parse(required(origin)?).ok_or("unknown origin")?,
        created: packed_number(created)?,
        absolute_expiry: packed_number(exp)?,
        last_seen: number(seen)?,
        link: match link {
            None => None,
            Some(link) => Some(Box::new(Link::from_field(link).ok_or("malformed link")?)),
        },
        id_token: None,
        express: express.map(Box::from),
    }))
}

/// The record's format version, if this build reads it.
fn parse_version(v: &str) -> Result<u8, &'static str> {
    let version = decimal(v.as_bytes())
        .and_then(|v| u8::try_from(v).ok())
        .ok_or("malformed version")?;
    if version != RECORD_VERSION {
        return Err("another format version");
    }
    Ok(version)
}

/// The `groups` value, comma-joined, as a list.
fn split_groups(groups: &str) -> Vec<String> {
    if groups.is_empty() {
        Vec::new()
    } else {
        groups.split(',').map(str::to_string).collect()
    }
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
    let version = parse_version(&text(v)?)?;
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
        user: text(user)?.into(),
        groups: split_groups(&groups),
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

/// A field's value as a number, parsed where it lies (no `String` for it); a missing field
/// (nil) is an unreadable record.
fn number(value: Value) -> Result<u64, &'static str> {
    let digits = match &value {
        Value::BulkString(bytes) => bytes.as_slice(),
        Value::SimpleString(s) => s.as_bytes(),
        Value::Nil => return Err("missing field"),
        _ => return Err("field is not a string"),
    };
    decimal(digits).ok_or("malformed number")
}

/// A number as [`encode`] and the touch script write them (times in milliseconds, the packed
/// record's lengths, the version): 1 to 19 ASCII digits, nothing else. By hand: `str::parse`
/// cost about 16 instructions a digit here, and this is about 330 fewer per lookup over its
/// three times and seven lengths (`benches/callgrind.sh`'s redis path). Stricter than
/// `str::parse`, which also takes a leading `+`, and 20 digits: no value doorman writes has
/// either (a time in milliseconds has 13 digits until the year 2286), and a record that does
/// is unreadable, so treated as absent, as any damaged record is. 19 digits cannot overflow a
/// `u64`.
fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut n = 0u64;
    for &b in digits {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        n = n * 10 + u64::from(digit);
    }
    Some(n)
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
            let mut r = Record::new("alice", groups, Origin::Handoff, 5, &T);
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

    /// What the lookup's HMGET of [`LOOKUP_FIELDS`] returns for `record`.
    fn lookup_reply(record: &Record) -> Value {
        let written = encode(record);
        Value::Array(
            LOOKUP_FIELDS
                .iter()
                .map(|f| {
                    let (_, v) = written.iter().find(|(k, _)| k == f).expect("written");
                    Value::BulkString(v.clone().into_bytes())
                })
                .collect(),
        )
    }

    #[test]
    fn records_round_trip_through_the_packed_field() {
        let mut r = Record::new("alice", vec![], Origin::Login, 5, &T);
        r.last_seen = 9;
        let found = |r: &Record| decode_lookup(lookup_reply(r));
        assert_eq!(found(&r), Ok(Lookup::Found(r.clone())));
        // Any character in a user name or a group (a line break, a backslash), including the
        // packing's own ':' and '-'.
        r.user = "-3:ünï\n\r\\,".into();
        r.groups = vec!["a:b".into(), "-".into(), "2:".into()];
        assert_eq!(found(&r), Ok(Lookup::Found(r.clone())));
        r.link = Some(Box::new(crate::session::Link {
            family: "ab".repeat(32),
            code: None,
        }));
        assert_eq!(found(&r), Ok(Lookup::Found(r.clone())));
        r.origin = Origin::Express;
        r.express = Some("x4Fa-id".into());
        assert_eq!(found(&r), Ok(Lookup::Found(r.clone())));
        r.link = None;
        assert_eq!(found(&r), Ok(Lookup::Found(r.clone())));
        // The ID token is written, never read back by a lookup.
        r.id_token = Some("sealed".into());
        let Ok(Lookup::Found(read)) = found(&r) else {
            panic!("not found")
        };
        assert_eq!(read.id_token, None);
    }

    #[test]
    fn the_lookup_tells_a_missing_record_from_one_without_the_packed_field() {
        assert_eq!(decode_lookup(Value::Nil), Ok(Lookup::Absent));
        assert_eq!(
            decode_lookup(Value::Array(vec![Value::Nil, Value::Nil])),
            Ok(Lookup::Absent)
        );
        // Written by a doorman from before the packed field: every record has `seen`.
        let seen = Value::BulkString(b"7".to_vec());
        assert_eq!(
            decode_lookup(Value::Array(vec![Value::Nil, seen])),
            Ok(Lookup::Unpacked)
        );
    }

    #[test]
    fn unreadable_packed_records_are_reported_not_decoded() {
        let r = Record::new("alice", vec![], Origin::Login, 5, &T);
        let with_packed = |packed: &str| {
            decode_lookup(Value::Array(vec![
                Value::BulkString(packed.as_bytes().to_vec()),
                Value::BulkString(b"7".to_vec()),
            ]))
        };
        let written = encode(&r);
        let (_, good) = written
            .into_iter()
            .find(|(k, _)| *k == PACKED_FIELD)
            .expect("packed");
        assert!(matches!(with_packed(&good), Ok(Lookup::Found(_))));
        for bad in [
            "",
            &good[..good.len() - 3],
            &format!("{good}1:x"),
            &good.replacen("1:1", "1:9", 1),
            &good.replacen("1:1", "x:1", 1),
            &good.replacen("5:alice", "9:alice", 1),
            &good.replacen("5:alice", "-", 1),
            // a length that ends inside a character
            &good.replacen("5:alice", "1:é", 1),
        ] {
            assert!(with_packed(bad).is_err(), "{bad:?}");
        }
        let no_seen = Value::Array(vec![Value::BulkString(good.into_bytes()), Value::Nil]);
        assert!(decode_lookup(no_seen).is_err(), "a record without seen");
        assert!(decode_lookup(Value::Int(1)).is_err());
        assert!(decode_lookup(Value::Array(vec![Value::Nil])).is_err());
    }

    #[test]
    fn numbers_are_plain_decimal_digits() {
        for (text, n) in [
            ("0", 0),
            ("7", 7),
            ("0042", 42),
            ("1733600000000", 1_733_600_000_000),
            ("9999999999999999999", 9_999_999_999_999_999_999),
        ] {
            assert_eq!(decimal(text.as_bytes()), Some(n), "{text:?}");
        }
        for text in [
            "",
            "+5",
            "-1",
            " 5",
            "5 ",
            "1e3",
            "1.5",
            "١",
            "18446744073709551615",
            "99999999999999999999",
        ] {
            assert_eq!(decimal(text.as_bytes()), None, "{text:?}");
        }
        assert_eq!(number(Value::BulkString(b"17".to_vec())), Ok(17));
        assert_eq!(number(Value::SimpleString("17".into())), Ok(17));
        assert!(number(Value::BulkString(vec![0xff])).is_err());
        assert!(number(Value::Nil).is_err());
        assert_eq!(
            parse_version(&RECORD_VERSION.to_string()),
            Ok(RECORD_VERSION)
        );
        assert!(parse_version("256").is_err());
        assert!(parse_version("").is_err());
    }

    #[test]
    fn unreadable_records_are_reported_not_decoded() {
        let mut r = Record::new("alice", vec![], Origin::Login, 5, &T);
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
