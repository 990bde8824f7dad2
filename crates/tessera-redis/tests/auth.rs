//! Username, password and database number from the URL, against a private
//! redis-server with an ACL user.

mod common;

use common::{TempRedis, round_trip};
use tessera_redis::RedisStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_user_password_and_database_come_from_the_url() {
    let server = TempRedis::start_with(&[
        "--requirepass",
        "default-secret",
        "--user",
        "ann",
        "on",
        ">ann-secret",
        "~*",
        "&*",
        "+@all",
    ]);
    let port = server.port();
    let url = format!("redis://ann:ann-secret@127.0.0.1:{port}/3?prefix=auth:");
    let store = RedisStore::connect(&url).await.expect("connect as ann");
    assert!(
        !format!("{store:?}").contains("ann-secret"),
        "Debug hides the password"
    );
    round_trip(store, "validate").await;

    // The record went to database 3.
    let as_ann = ["--user", "ann", "--pass", "ann-secret", "--no-auth-warning"];
    let mut in_db3 = as_ann.to_vec();
    in_db3.extend(["-n", "3", "--scan", "--pattern", "auth:s:*"]);
    let in_db3 = server.cli(&in_db3);
    assert_eq!(
        in_db3.lines().count(),
        1,
        "one record in database 3: {in_db3}"
    );
    let mut in_db0 = as_ann.to_vec();
    in_db0.extend(["--scan", "--pattern", "auth:*"]);
    let in_db0 = server.cli(&in_db0);
    assert!(in_db0.is_empty(), "nothing in database 0: {in_db0}");

    // A wrong password is refused at connect.
    let wrong = format!("redis://ann:wrong@127.0.0.1:{port}/3");
    assert!(RedisStore::connect(&wrong).await.is_err());
}
