//! The demo's user directory: two users with argon2id-hashed passwords.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordVerifier};

/// The demo users and the argon2id (m=19 MiB, t=2, p=1) hashes of their
/// passwords `alice-demo-password` and `bob-demo-password`.
const USERS: [(&str, &str); 2] = [
    (
        "alice",
        "$argon2id$v=19$m=19456,t=2,p=1$ypw67VFuXtbW5LU2zkowtw$TkVrmsX74jmaLEFNkrlSNOHKb40quANBKpHlAyELClM",
    ),
    (
        "bob",
        "$argon2id$v=19$m=19456,t=2,p=1$38YBQLBxw1GqGd7EbIHOVg$dhpZaf5fO/VCCtZCdjjQKNC+67Kn3ducMD29r1+k6PE",
    ),
];

/// Checked for unknown user names, so that a wrong name takes as long as a
/// wrong password (no user enumeration by timing).
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$y4/NQGRnkd5//l9HtcXHbQ$wx6oq1Fq9mGbFvdUyh4rS4QAG2LQnqGozOYq3WBKEeQ";

/// The user name if `password` is that user's password.
pub fn authenticate(username: &str, password: &str) -> Option<&'static str> {
    let (name, hash) = USERS
        .iter()
        .find(|(name, _)| *name == username)
        .copied()
        .unwrap_or(("", DUMMY_HASH));
    let parsed = PasswordHash::new(hash).ok()?;
    let matches = Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    (matches && !name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_passwords_verify_and_nothing_else_does() {
        assert_eq!(authenticate("alice", "alice-demo-password"), Some("alice"));
        assert_eq!(authenticate("bob", "bob-demo-password"), Some("bob"));
        assert_eq!(authenticate("alice", "bob-demo-password"), None);
        assert_eq!(authenticate("mallory", "no-such-user-dummy-password"), None);
        assert_eq!(authenticate("", ""), None);
    }
}
