//! A throw-away Postgres server for the drills that crash the database
//! under running services: the shared devstack server must never be
//! restarted, since other tests use it at the same time.

use crate::{StackConfig, postgres};

/// A Postgres 15 server of its own (data directory, port, core-service
/// database), built as devstack builds the stack's; stopped and deleted on
/// drop.
pub struct PrivatePostgres {
    config: StackConfig,
}

impl PrivatePostgres {
    /// Initialises and starts a server on a free port with the
    /// core-service database (`onsale_core`) created, empty.
    ///
    /// # Errors
    /// As [`postgres::up`].
    pub async fn start() -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = std::env::temp_dir().join(format!("onsale-postgres-{}", super::unique_suffix()));
        std::fs::create_dir_all(&dir)?;
        let config = StackConfig {
            dir,
            postgres_port: port,
            ..StackConfig::default()
        };
        std::fs::create_dir_all(config.logs_dir())?;
        let server = Self { config };
        postgres::up(&server.config).await?;
        Ok(server)
    }

    /// The URL of the core-service database.
    pub fn url(&self) -> String {
        postgres::database_url(&self.config, postgres::CORE_DATABASE)
    }

    /// Crashes and restarts the server ([`postgres::restart_immediate`]).
    ///
    /// # Errors
    /// As [`postgres::restart_immediate`].
    pub fn restart_immediate(&self) -> anyhow::Result<()> {
        postgres::restart_immediate(&self.config)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        postgres::down(&self.config);
        postgres::purge(&self.config);
        let _ = std::fs::remove_dir_all(&self.config.dir);
    }
}
