//! Shared set-up of the storage tests: a migrated store on a SQLite file or on a throwaway
//! MariaDB database.

#![allow(dead_code, clippy::unwrap_used)]

use mesh_schema::{DatabaseTarget, SecretBox, SecretKey, Store};
use mesh_testkit::mariadb::TestDatabase;

/// Keeps whatever backs a test store alive for the test's duration.
pub enum Backing {
    /// The directory holding the SQLite file.
    Sqlite(tempfile::TempDir),
    /// The throwaway MariaDB database.
    Mariadb(TestDatabase),
}

/// A migrated store and what it runs on.
pub struct Harness {
    /// The store under test.
    pub store: Store,
    /// Its database, for raw reads.
    pub target: DatabaseTarget,
    /// Keeps the database alive.
    pub backing: Backing,
}

impl Harness {
    /// A store on a fresh SQLite file.
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meshd.db");
        let target = DatabaseTarget::parse(&format!("sqlite://{}", path.display())).unwrap();
        Self::open(target, Backing::Sqlite(dir)).await
    }

    /// A store on a fresh MariaDB database.
    pub async fn mariadb() -> Self {
        let database = TestDatabase::create();
        let target = DatabaseTarget::parse(&database.url()).unwrap();
        Self::open(target, Backing::Mariadb(database)).await
    }

    async fn open(target: DatabaseTarget, backing: Backing) -> Self {
        let secrets = SecretBox::new(&SecretKey::generate());
        let store = Store::open(target.clone(), secrets, 4, true).await.unwrap();
        Self {
            store,
            target,
            backing,
        }
    }
}

/// Runs each listed `async fn(Harness)` once on SQLite and once on MariaDB.
#[macro_export]
macro_rules! on_every_backend {
    ($($check:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::$check(super::common::Harness::sqlite().await).await;
                }
            )+
        }
        mod mariadb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::$check(super::common::Harness::mariadb().await).await;
                }
            )+
        }
    };
}
