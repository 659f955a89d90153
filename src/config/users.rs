//! The users file: who may log in with a password, and their groups.
//!
//! ```toml
//! [users.alice]
//! password = "$argon2id$v=19$m=19456,t=2,p=1$..."   # from `doorman hash-password`
//! groups = ["admin"]
//! ```
//!
//! Passwords are Argon2id PHC strings (memory-hard, no 72-byte truncation as with bcrypt).
//! [`Users::hash_for`] gives a user that does not exist a dummy hash with the same parameters,
//! so checking it costs the same as a wrong password and response time does not reveal which
//! user names exist. It is CPU- and memory-heavy: logins run it on their hashing
//! pool (`login::hasher`), with the hash [`Users::hash_for`] picks.
//!
//! The file lives with the config because it is loaded, validated (`doorman check`) and
//! reloaded (`SIGHUP`) with it; what is done with it at login is the login room's.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::Path;

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Argon2, PasswordHasher};
use toml::Value;

use crate::config::reader::{KeyError, Section};
use crate::config::source::{Document, Position, Step};
use crate::config::spelling::did_you_mean;
use crate::identity::{check_name, Identity};

/// One local user.
#[derive(Debug, Clone)]
pub struct User {
    /// The PHC string, validated as Argon2id at load.
    hash: String,
    /// The user's name and groups (as the file lists them), validated: every request on this
    /// user's password sessions forwards it as it is (see [`Identity`]).
    pub identity: Identity,
}

impl User {
    /// The user's groups, as the file lists them.
    pub fn groups(&self) -> &[String] {
        self.identity.groups()
    }
}

/// A map by user name, hashed with FNV-1a rather than SipHash.
///
/// SipHash is there to stop a client from choosing keys that pile into one bucket. This map's
/// keys come from the users file alone; a client chooses only names to *look up* (a session's
/// user, a login's), and a lookup cannot lengthen a probe sequence. Every request on a password
/// session looks its user up here, where SipHash cost about 170 instructions
/// (`benches/callgrind.sh`'s authenticated path) and FNV-1a costs a few per byte of the name.
type NameMap<V> = HashMap<String, V, BuildHasherDefault<NameHasher>>;

/// FNV-1a, 64-bit.
struct NameHasher(u64);

impl Default for NameHasher {
    fn default() -> Self {
        NameHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Why a users file could not be used.
#[derive(Debug)]
pub enum UsersError {
    /// The file could not be read (reported against `login.users_file` in proxy.toml).
    Read(String),
    /// Entries are wrong (reported against the users file, by key).
    Invalid(Vec<KeyError>),
}

/// Every local user, by name.
#[derive(Debug, Clone)]
pub struct Users {
    users: NameMap<User>,
    /// Verified against when the user is unknown, so both paths cost one Argon2id run.
    dummy: String,
}

impl Users {
    /// No local users (no users file): every password login fails.
    pub fn empty() -> Users {
        Users {
            users: NameMap::default(),
            dummy: dummy_hash(None),
        }
    }

    /// Read and validate a users file; every problem is reported with its key path.
    pub fn load(path: &Path) -> Result<Users, UsersError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| UsersError::Read(format!("cannot read {}: {e}", path.display())))?;
        Users::parse(&text).map_err(UsersError::Invalid)
    }

    /// Validate the text of a users file. Errors are placed in it like proxy.toml's: each user
    /// is read as a [`Section`], so a wrong type, an unknown key (with the key it was probably
    /// meant to be) and a bad value get their line and column.
    pub fn parse(text: &str) -> Result<Users, Vec<KeyError>> {
        let doc = Document::parse(text).map_err(|e| {
            vec![KeyError {
                key: "users".into(),
                message: format!("not valid TOML: {}", e.message().trim()),
                at: e.span().map(|s| Position::of(text, s.start)),
            }]
        })?;
        let mut errors = Vec::new();
        for key in doc.values().keys().filter(|k| *k != "users") {
            let path = [Step::key(key)];
            let message = match did_you_mean(key, ["users"]) {
                Some(_) => "unknown key; did you mean `users`?",
                None => "unknown key (users go under [users.NAME])",
            };
            errors.push(KeyError::key(&doc, &path, message));
        }
        let table = match doc.values().get("users") {
            None => None,
            Some(Value::Table(t)) => Some(t),
            Some(_) => {
                let path = [Step::key("users")];
                errors.push(KeyError::value(&doc, &path, "expected a table of users"));
                None
            }
        };
        let mut users = NameMap::default();
        let mut first_hash = None;
        for (name, entry) in table.into_iter().flatten() {
            let at = vec![Step::key("users"), Step::key(name)];
            if let Err(e) = check_name(name) {
                let message = format!("invalid user name: {e}");
                errors.push(KeyError::key(&doc, &at, message));
            }
            let Some(entry) = entry.as_table() else {
                let message = "expected a table with password and groups";
                errors.push(KeyError::value(&doc, &at, message));
                continue;
            };
            let mut s = Section::entry(&doc, at, entry, &mut errors);
            let hash = match s.opt_str("password") {
                Some(h) if is_argon2id(h) => Some(h.to_string()),
                Some(_) => {
                    let message = "not an argon2id hash: make one with `doorman hash-password`";
                    s.error("password", message);
                    None
                }
                None => {
                    if !s.has("password") {
                        let message = "required: an argon2id hash from `doorman hash-password`";
                        s.error("password", message);
                    }
                    None
                }
            };
            let groups = s.list("groups", |g| {
                check_name(g)
                    .map(|()| g.to_string())
                    .map_err(|e| format!("invalid group: {e}"))
            });
            s.finish();
            let Some(hash) = hash else { continue };
            // A name or group that fails the rule was reported above, and the file is refused.
            let Ok(identity) = Identity::new(name.as_str(), groups) else {
                continue;
            };
            first_hash.get_or_insert_with(|| hash.clone());
            users.insert(name.clone(), User { hash, identity });
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Users {
            users,
            dummy: dummy_hash(first_hash.as_deref()),
        })
    }

    /// The user named `name`, if any.
    pub fn get(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    /// How many users the file has.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether the file has no users (or there is no file).
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The hash a password for `name` is checked against, and the user if there is one. An
    /// unknown name gets the dummy hash, so both cost one Argon2id run and take the same time.
    pub fn hash_for(&self, name: &str) -> (&str, Option<&User>) {
        match self.users.get(name) {
            Some(user) => (&user.hash, Some(user)),
            None => (&self.dummy, None),
        }
    }
}

/// Hash a password for the users file (`doorman hash-password`).
pub fn hash_password(password: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h: PasswordHash| h.to_string())
        .map_err(|e| format!("hashing failed: {e}"))
}

fn is_argon2id(hash: &str) -> bool {
    hash.parse::<PasswordHash>()
        .is_ok_and(|h| h.algorithm.as_str() == "argon2id")
}

/// A hash that no password matches and that costs what `like` (the file's first hash) costs to
/// check, or a default hash: Argon2id with `like`'s parameters and output length, a random
/// salt and a random output. Nothing is hashed to make it: a check runs Argon2 with those
/// parameters and compares with random bytes, which is the cost that must match a real user's.
/// So reading a users file (at start-up, on every reload, in `doorman check`) costs no Argon2
/// run, and allocates nothing, whatever memory the parameters ask for.
fn dummy_hash(like: Option<&str>) -> String {
    let params = like
        .and_then(|h| h.parse::<PasswordHash>().ok())
        .and_then(|h| argon2::Params::try_from(&h).ok())
        .unwrap_or_default();
    let mut random = [0u8; SALT_LEN + Output::MAX_LENGTH];
    let _ = getrandom::fill(&mut random);
    let (salt, output) = random.split_at(SALT_LEN);
    let len = params
        .output_len()
        .unwrap_or(argon2::Params::DEFAULT_OUTPUT_LEN);
    let hash = || {
        Some(PasswordHash {
            algorithm: argon2::ARGON2ID_IDENT,
            version: Some(argon2::Version::V0x13 as u32),
            params: ParamsString::try_from(&params).ok()?,
            salt: Some(Salt::new(salt).ok()?),
            hash: Some(Output::new(output.get(..len)?).ok()?),
        })
    };
    hash().map(|h| h.to_string()).unwrap_or_default()
}

/// The salt length `doorman hash-password` uses (the PHC recommendation).
const SALT_LEN: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_hash_as_fnv_1a() {
        use std::hash::BuildHasher;
        let build = BuildHasherDefault::<NameHasher>::default();
        let mut h = build.build_hasher();
        h.write(b"a");
        // The published FNV-1a 64-bit test vector for "a".
        assert_eq!(h.finish(), 0xaf63_dc4c_8601_ec8c);
        let mut names = NameMap::default();
        for i in 0..1000 {
            names.insert(format!("user{i}"), i);
        }
        assert!((0..1000).all(|i| names.get(format!("user{i}").as_str()) == Some(&i)));
        assert_eq!(names.get("user1000"), None);
    }

    #[test]
    fn hashes_verify_and_wrong_passwords_do_not() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        let users = Users::parse(&format!(
            "[users.alice]\npassword = {hash:?}\ngroups = [\"admin\"]\n"
        ))
        .unwrap();
        // As a login checks: the hash for the name, then the password against it.
        let verify = |name: &str, password: &str| {
            let (hash, user) = users.hash_for(name);
            let matched = PasswordHash::new(hash).is_ok_and(|h| {
                argon2::PasswordVerifier::verify_password(
                    &Argon2::default(),
                    password.as_bytes(),
                    &h,
                )
                .is_ok()
            });
            user.filter(|_| matched).map(|u| u.groups().to_vec())
        };
        assert_eq!(
            verify("alice", "correct horse"),
            Some(vec!["admin".to_string()])
        );
        assert!(verify("alice", "wrong").is_none());
        assert!(verify("mallory", "correct horse").is_none());
    }

    /// Seen with fuzz/fuzz_targets/config.rs: the dummy hash was a real Argon2 run at load, so a
    /// users file whose first hash asks for 1.5 GB made reading the file allocate 1.5 GB (and
    /// every config read cost a hash). The dummy now only copies the parameters.
    #[test]
    fn the_dummy_hash_costs_what_the_first_hash_costs_and_nothing_to_make() {
        let big = "$argon2id$v=19$m=1500000,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";
        let started = std::time::Instant::now();
        let users = Users::parse(&format!("[users.alice]\npassword = {big:?}\n")).unwrap();
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        let (dummy, user) = users.hash_for("nobody");
        assert!(user.is_none());
        let dummy = PasswordHash::new(dummy).unwrap();
        let real = PasswordHash::new(big).unwrap();
        assert_eq!(dummy.algorithm, real.algorithm);
        assert_eq!(dummy.version, real.version);
        assert_eq!(
            argon2::Params::try_from(&dummy).unwrap(),
            argon2::Params::try_from(&real).unwrap()
        );
        assert_ne!(dummy.hash, real.hash);
        // Without users: the defaults `doorman hash-password` uses, a fresh salt each time.
        let (a, b) = (Users::empty(), Users::empty());
        let a = PasswordHash::new(a.hash_for("x").0).unwrap();
        let default = PasswordHash::new(&hash_password("pw").unwrap()).unwrap();
        assert_eq!(
            argon2::Params::try_from(&a).unwrap(),
            argon2::Params::try_from(&default).unwrap()
        );
        assert_ne!(a.salt, PasswordHash::new(b.hash_for("x").0).unwrap().salt);
    }

    /// Each error as shown, with its position in the users file.
    fn shown(errors: &[KeyError]) -> Vec<String> {
        errors
            .iter()
            .map(|e| match e.at {
                Some(at) => format!("{at}: {e}"),
                None => e.to_string(),
            })
            .collect()
    }

    #[test]
    fn bad_entries_are_reported_with_their_keys_and_positions() {
        let errors = Users::parse(
            "[users.alice]\npassword = \"plaintext\"\n[users.bob]\ngroups = [\"a,b\"]\npasword = \"x\"\n[users.\"x,y\"]\npassword = \"$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g\"\nshell = 1\n[user.carol]\n",
        )
        .unwrap_err();
        assert_eq!(
            shown(&errors),
            [
                "9:2: user: unknown key; did you mean `users`?",
                "2:12: users.alice.password: not an argon2id hash: make one with `doorman hash-password`",
                "users.bob.password: required: an argon2id hash from `doorman hash-password`",
                "4:11: users.bob.groups[0]: invalid group: name contains a character that is not printable ASCII, or a comma",
                "5:1: users.bob.pasword: unknown key; did you mean `password`?",
                "6:8: users.x,y: invalid user name: name contains a character that is not printable ASCII, or a comma",
                "7:12: users.x,y.password: not an argon2id hash: make one with `doorman hash-password`",
                "8:1: users.x,y.shell: unknown key",
            ]
        );
    }

    #[test]
    fn a_users_file_that_is_not_toml_is_placed_too() {
        let errors = Users::parse("[users.alice]\npassword = \n").unwrap_err();
        let shown = shown(&errors);
        assert_eq!(shown.len(), 1, "{shown:?}");
        assert!(
            shown[0].starts_with("2:12: users: not valid TOML: "),
            "{shown:?}"
        );
    }
}
