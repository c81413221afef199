//! nginx, the static-file baseline of the seat map: the very bytes
//! core-service served, written to a scratch directory and served by an
//! nginx of the bench's own (generated `nginx.conf`, a free loopback port,
//! the current user, one worker per core, no access log), stopped when
//! dropped.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use devstack::install;

/// A running nginx serving one file.
pub(super) struct Nginx {
    binary: PathBuf,
    dir: PathBuf,
    child: tokio::process::Child,
    stopped: bool,
    /// The file's URL.
    pub(super) url: String,
}

/// What the served file is: its URL path and its reply headers.
pub(super) struct Served<'a> {
    /// e.g. `/v1/performances/7/seats`.
    pub(super) path: &'a str,
    /// The body, exactly as sent.
    pub(super) body: &'a [u8],
    /// `Content-Type`.
    pub(super) content_type: &'a str,
    /// `Content-Encoding`, e.g. `br`.
    pub(super) content_encoding: &'a str,
    /// `Cache-Control`, as the service sent it.
    pub(super) cache_control: &'a str,
}

impl Nginx {
    /// Writes `served` under `work/nginx/root`, generates the config and
    /// starts nginx (installed with apt-get when missing), waiting until it
    /// answers.
    ///
    /// # Errors
    /// When nginx cannot be installed, does not start or does not answer
    /// within 5 s.
    pub(super) async fn start(work: &Path, served: &Served<'_>) -> Result<Self> {
        let binary = install::ensure_nginx()?;
        let dir = work.join("nginx");
        let _ = std::fs::remove_dir_all(&dir);
        let file = dir.join("root").join(served.path.trim_start_matches('/'));
        std::fs::create_dir_all(file.parent().context("a file path without a folder")?)?;
        std::fs::create_dir_all(dir.join("tmp"))?;
        std::fs::write(&file, served.body)?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let workers = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        std::fs::write(dir.join("nginx.conf"), config(&dir, port, workers, served))?;
        let mut command = tokio::process::Command::new(&binary);
        command
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let child = command.spawn().context("starting nginx")?;
        let nginx = Self {
            binary,
            dir,
            child,
            stopped: false,
            url: format!("http://127.0.0.1:{port}{}", served.path),
        };
        let http = reqwest::Client::new();
        for _ in 0..50 {
            if http
                .get(&nginx.url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(nginx);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let log = std::fs::read_to_string(nginx.dir.join("error.log")).unwrap_or_default();
        bail!("nginx did not answer on port {port} within 5 s: {log}");
    }

    /// `nginx -s stop` for this nginx: it signals the master by the PID in
    /// its own PID file, and the master stops its workers.
    fn stop_command(&self) -> std::process::Command {
        let mut command = std::process::Command::new(&self.binary);
        command
            .arg("-e")
            .arg(self.dir.join("error.log"))
            .arg("-p")
            .arg(&self.dir)
            .arg("-c")
            .arg(self.dir.join("nginx.conf"))
            .args(["-s", "stop"])
            .stdin(Stdio::null());
        command
    }

    /// Stops nginx and waits for it.
    pub(super) async fn stop(mut self) {
        self.stopped = true;
        let stopped = tokio::process::Command::from(self.stop_command())
            .status()
            .await
            .is_ok_and(|s| s.success());
        if !stopped
            || tokio::time::timeout(Duration::from_secs(10), self.child.wait())
                .await
                .is_err()
        {
            eprintln!("bench: nginx did not stop; killing its master");
            let _ = self.child.kill().await;
        }
    }
}

/// The generated `nginx.conf`: no daemon, PID, logs and temp files in
/// `dir`, keep-alive without a request limit (wrk keeps its connections, as
/// with the service), the file served with the service's headers.
fn config(dir: &Path, port: u16, workers: usize, served: &Served<'_>) -> String {
    let dir = dir.display();
    // As root nginx would hand its workers to `nobody`; keep them as the
    // user who runs the bench.
    let user = if devstack::process::is_root() {
        "user root;\n"
    } else {
        ""
    };
    format!(
        r#"{user}daemon off;
worker_processes {workers};
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 75s;
    keepalive_requests 100000000;
    open_file_cache max=16 inactive=60s;
    open_file_cache_valid 60s;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    types {{ }}
    default_type "{content_type}";
    server {{
        listen 127.0.0.1:{port};
        root {dir}/root;
        location / {{
            add_header Content-Encoding "{encoding}";
            add_header Cache-Control "{cache}";
        }}
    }}
}}
"#,
        content_type = served.content_type,
        encoding = served.content_encoding,
        cache = served.cache_control,
    )
}

impl Drop for Nginx {
    /// A bench that failed midway stops its nginx too (the master alone,
    /// killed on drop, would leave its workers serving).
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.stop_command().status();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_serves_the_file_with_the_service_headers_and_no_access_log() {
        let served = Served {
            path: "/v1/performances/7/seats",
            body: b"x",
            content_type: "application/json",
            content_encoding: "br",
            cache_control: "public, max-age=1",
        };
        let text = config(Path::new("/tmp/b"), 4242, 2, &served);
        for line in [
            "daemon off;",
            "worker_processes 2;",
            "pid /tmp/b/nginx.pid;",
            "access_log off;",
            "listen 127.0.0.1:4242;",
            "root /tmp/b/root;",
            "add_header Content-Encoding \"br\";",
            "add_header Cache-Control \"public, max-age=1\";",
            "default_type \"application/json\";",
        ] {
            assert!(text.contains(line), "{line} missing from {text}");
        }
    }
}
