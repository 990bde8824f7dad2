//! What the operations leave in a row: the record's bytes as the codec
//! wrote them, with the columns beside them agreeing.

mod common;

use std::time::Duration;

use common::{Schemas, admin, now, sample_record};
use tessera_core::codec;
use tessera_core::forget_at;
use tessera_core::store::{Records, WriteOutcome};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn touch_raises_both_deadlines_inside_the_bytes_and_in_the_column() {
    let schemas = Schemas::new("touch");
    let store = schemas.fresh_store().await;
    let record = sample_record(&store, Some("toucher"));
    let forget = forget_at(&record);
    store.create(&record, forget).await.expect("create");
    let seen = record.last_seen_at.plus(Duration::from_secs(90));
    let later = forget.plus(Duration::from_secs(90));
    for (last_seen, forget_at) in [(seen, later), (record.last_seen_at, forget)] {
        let touched = store
            .touch(&record.id, last_seen, forget_at, now())
            .await
            .expect("touch");
        assert_eq!(touched, WriteOutcome::Written);
    }
    let row = admin()
        .await
        .query_one(
            &format!(
                r#"SELECT forget_at, subject, record FROM "{}".records WHERE id = $1"#,
                store.schema()
            ),
            &[&&record.id.0[..]],
        )
        .await
        .expect("read the row");
    let column: i64 = row.get(0);
    let subject: Option<String> = row.get(1);
    let bytes: Vec<u8> = row.get(2);
    assert_eq!(column, later.as_millis(), "the column moved forward only");
    assert_eq!(subject.as_deref(), Some("toucher"));
    assert_eq!(
        codec::forget_at_of(&bytes),
        Some(later),
        "and so did the bytes"
    );
    assert_eq!(&bytes[codec::LAST_SEEN], &seen.as_millis().to_be_bytes());
    assert_eq!(codec::revision_of(&bytes), Some(record.revision()));
    let stored = codec::decode(&bytes, None).expect("decode");
    assert_eq!(stored.last_seen_at, seen);
    let mut expected = record.clone();
    expected.last_seen_at = seen;
    assert_eq!(stored, expected, "nothing else changed");
    schemas.drop_all().await;
}
