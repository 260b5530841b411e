//! Shared set-up of the API tests: a migrated store (SQLite file or throwaway MariaDB database),
//! an in-process bus, tokens for two tenants, and request helpers.

#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Service, ServiceResponse};
use actix_web::{App, test};
use futures::StreamExt;
use mesh_api::{ApiState, configure};
use mesh_bus::{Bus, BusConfig, CommandEnvelope, LocalBus};
use mesh_core::{TenantId, VersionCatalog};
use mesh_schema::models::{NewMemberCluster, NewMesh};
use mesh_schema::store::token::{NewApiToken, TokenRole};
use mesh_schema::{DatabaseTarget, SecretBox, SecretKey, Store};
use mesh_testkit::mariadb::TestDatabase;
use serde_json::Value;

/// Partitions of the test bus.
pub const PARTITIONS: u32 = 4;

/// Keeps the database alive for the test.
pub enum Backing {
    /// The directory of the SQLite file.
    Sqlite(tempfile::TempDir),
    /// The throwaway MariaDB database.
    Mariadb(TestDatabase),
}

/// Store, bus and tokens of one test.
pub struct Harness {
    pub store: Store,
    pub bus: LocalBus,
    pub backing: Backing,
    /// Editor of tenant `acme`.
    pub acme_editor: String,
    /// Viewer of tenant `acme`.
    pub acme_viewer: String,
    /// Editor of tenant `globex`.
    pub globex_editor: String,
    /// Administrator (tenant `ops`).
    pub admin: String,
}

async fn token(store: &Store, tenant: &str, role: TokenRole) -> String {
    store
        .create_api_token(NewApiToken {
            principal: format!("user:{tenant}-{role}"),
            tenant: TenantId::new(tenant).unwrap(),
            role,
        })
        .await
        .unwrap()
        .token
}

impl Harness {
    /// On a fresh SQLite file.
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("meshd.db").display());
        Self::open(DatabaseTarget::parse(&url).unwrap(), Backing::Sqlite(dir)).await
    }

    /// On a fresh MariaDB database.
    pub async fn mariadb() -> Self {
        let database = TestDatabase::create();
        let target = DatabaseTarget::parse(&database.url()).unwrap();
        Self::open(target, Backing::Mariadb(database)).await
    }

    async fn open(target: DatabaseTarget, backing: Backing) -> Self {
        let secrets = SecretBox::new(&SecretKey::generate());
        let store = Store::open(target, secrets, 4, true).await.unwrap();
        let bus = LocalBus::new(BusConfig::default().partitions(PARTITIONS)).unwrap();
        Self {
            acme_editor: token(&store, "acme", TokenRole::Editor).await,
            acme_viewer: token(&store, "acme", TokenRole::Viewer).await,
            globex_editor: token(&store, "globex", TokenRole::Editor).await,
            admin: token(&store, "ops", TokenRole::Admin).await,
            store,
            bus,
            backing,
        }
    }

    /// API state over this harness's store and bus, tokens required.
    pub fn state(&self) -> ApiState {
        ApiState::new(VersionCatalog::builtin())
            .with_store(self.store.clone())
            .with_bus(Arc::new(self.bus.clone()) as Arc<dyn Bus>)
    }

    /// Records a mesh of `tenant` with one member cluster per name, as a worker would.
    pub async fn seed_mesh(&self, tenant: &str, name: &str, clusters: &[&str]) {
        self.store
            .create_mesh(NewMesh {
                tenant_id: tenant.into(),
                name: name.into(),
                region: "eu-west".into(),
                title: format!("{name} mesh"),
                status: "Running".into(),
                version: "1.30.3".into(),
                config: Some(r#"{"traceSampling":5.0,"outboundTrafficPolicy":"ALLOW_ANY"}"#.into()),
                mode: if clusters.len() > 1 {
                    "multi-primary"
                } else {
                    "single"
                }
                .into(),
                state: None,
            })
            .await
            .unwrap();
        for cluster in clusters {
            self.store
                .add_member_cluster(NewMemberCluster {
                    name: (*cluster).into(),
                    region: "eu-west".into(),
                    mesh_name: name.into(),
                    role: "master".into(),
                    phase: "Running".into(),
                    network: String::new(),
                })
                .await
                .unwrap();
        }
    }

    /// The next command published on the bus, waiting at most 5 s.
    pub async fn next_command(&self) -> mesh_bus::Delivery {
        let partitions: Vec<u32> = (0..PARTITIONS).collect();
        let mut commands = self.bus.consume_commands(&partitions).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), commands.next())
            .await
            .expect("a command within 5 s")
            .unwrap()
            .unwrap()
    }

    /// How many commands wait on the bus.
    pub fn pending_commands(&self) -> usize {
        self.bus.pending_commands()
    }
}

/// The envelope of a delivery.
pub fn envelope(delivery: &mesh_bus::Delivery) -> &CommandEnvelope {
    delivery.envelope()
}

/// A request builder with a bearer token.
pub fn with_token(request: test::TestRequest, token: &str) -> test::TestRequest {
    request.insert_header(("Authorization", format!("Bearer {token}")))
}

/// Calls the app and returns status and body (JSON, or `Null` for an empty body).
pub async fn call<S>(app: &S, request: test::TestRequest) -> (u16, Value)
where
    S: Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
{
    let response = test::call_service(app, request.to_request()).await;
    let status = response.status().as_u16();
    let bytes = test::read_body(response).await;
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            panic!(
                "status {status}: body is not JSON: {}",
                String::from_utf8_lossy(&bytes)
            )
        })
    };
    (status, body)
}

/// Builds the app under test.
pub async fn app(
    state: ApiState,
) -> impl Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error> {
    test::init_service(App::new().configure(configure(state))).await
}

/// Runs each listed `async fn(Harness)` once on SQLite and once on MariaDB.
#[macro_export]
macro_rules! on_every_backend {
    ($($check:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[actix_web::test]
                async fn $check() {
                    super::$check(super::common::Harness::sqlite().await).await;
                }
            )+
        }
        mod mariadb {
            $(
                #[actix_web::test]
                async fn $check() {
                    super::$check(super::common::Harness::mariadb().await).await;
                }
            )+
        }
    };
}
