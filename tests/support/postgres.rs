//! A real PostgreSQL for tests: a throwaway cluster of the machine's
//! PostgreSQL binaries on a random port, or a database created on the server
//! `PATCHBAY_TEST_DATABASE_URL` names. Each [`TestPostgres`] is its own
//! database; a cluster stops when its value is dropped.
//!
//! Without either, tests fail (never skip) and say how to provide one.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Names a server to use instead of starting a cluster.
pub const URL_VARIABLE: &str = "PATCHBAY_TEST_DATABASE_URL";

/// A database for one test.
pub struct TestPostgres {
    url: String,
    cluster: Option<Cluster>,
}

struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    owner: Option<(u32, u32)>,
    server: Option<Child>,
    durable: bool,
}

impl TestPostgres {
    /// A fresh, empty database.
    pub async fn start() -> TestPostgres {
        Self::start_with(false).await
    }

    /// A fresh database on a cluster that flushes every commit to disk
    /// (`fsync=on`), as production runs: for benchmarks.
    pub async fn start_durable() -> TestPostgres {
        Self::start_with(true).await
    }

    async fn start_with(durable: bool) -> TestPostgres {
        if let Ok(server) = std::env::var(URL_VARIABLE) {
            let name = format!("patchbay_test_{}", uuid::Uuid::now_v7().simple());
            let (client, connection) = tokio_postgres::connect(&server, tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("{URL_VARIABLE} names a server that refuses: {e}"));
            tokio::spawn(connection);
            client
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .expect("create the test database");
            return TestPostgres {
                url: with_database(&server, &name),
                cluster: None,
            };
        }
        let bin = binaries().unwrap_or_else(|| {
            panic!(
                "PostgreSQL tests need a server: install PostgreSQL's server binaries \
                 (initdb, postgres; Debian: apt-get install postgresql) or set \
                 {URL_VARIABLE}=postgres://user:password@host:port/postgres"
            )
        });
        let mut cluster = Cluster::create(bin, durable);
        cluster.start();
        TestPostgres {
            url: format!(
                "postgres://patchbay@127.0.0.1:{}/postgres?sslmode=disable",
                cluster.port
            ),
            cluster: Some(cluster),
        }
    }

    /// The database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stops the server (a fast shutdown: clients are cut off). Only for a
    /// cluster this test started.
    pub fn stop(&mut self) {
        self.cluster
            .as_mut()
            .expect("only a cluster the test started can be stopped")
            .stop();
    }

    /// Starts the stopped server again, on the same port.
    pub fn restart(&mut self) {
        self.cluster
            .as_mut()
            .expect("only a cluster the test started can be restarted")
            .start();
    }
}

/// The URL `server` with the database `name` in place of its own.
fn with_database(server: &str, name: &str) -> String {
    match server.rsplit_once('/') {
        Some((base, rest)) => match rest.split_once('?') {
            Some((_, query)) => format!("{base}/{name}?{query}"),
            None => format!("{base}/{name}"),
        },
        None => server.to_string(),
    }
}

/// The directory holding `initdb` and `postgres`: on `PATH`, or Debian's
/// versioned directories.
fn binaries() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    debian.sort();
    debian.reverse();
    on_path
        .into_iter()
        .chain(debian)
        .find(|dir| dir.join("initdb").is_file() && dir.join("postgres").is_file())
}

/// PostgreSQL refuses to run as root: then the cluster belongs to the
/// `postgres` user (or `nobody`).
fn owner() -> Option<(u32, u32)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let root = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        == Some("0");
    if !root {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    ["postgres", "nobody"].iter().find_map(|name| {
        passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(name) && fields.len() > 3)
                .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
                .flatten()
        })
    })
}

fn as_owner(command: &mut Command, owner: Option<(u32, u32)>) -> &mut Command {
    use std::os::unix::process::CommandExt as _;
    if let Some((uid, gid)) = owner {
        command.uid(uid).gid(gid);
    }
    command
}

fn chown(path: &Path, owner: Option<(u32, u32)>) {
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown for postgres");
    }
}

impl Cluster {
    fn create(bin: PathBuf, durable: bool) -> Cluster {
        let owner = owner();
        let dir = tempfile::Builder::new()
            .prefix("patchbay-pg-")
            .tempdir()
            .expect("temp dir");
        chown(dir.path(), owner);
        let template = template(&bin, owner);
        let copied = Command::new("cp")
            .arg("-a")
            .arg(&template)
            .arg(dir.path().join("data"))
            .status()
            .expect("cp");
        assert!(copied.success(), "copying the cluster template failed");
        let port = free_port();
        Cluster {
            bin,
            dir,
            port,
            owner,
            server: None,
            durable,
        }
    }

    fn start(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("server.log")).expect("log file");
        chown(&self.dir.path().join("server.log"), self.owner);
        let child = as_owner(&mut Command::new(self.bin.join("postgres")), self.owner)
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-p", &self.port.to_string()])
            .arg("-k")
            .arg(self.dir.path())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                // The tests kill Patchbay, not the machine: the OS keeps
                // what was written.
                "-c",
                if self.durable {
                    "fsync=on"
                } else {
                    "fsync=off"
                },
                "-c",
                "max_connections=300",
                "-c",
                if self.durable {
                    "shared_buffers=256MB"
                } else {
                    "shared_buffers=32MB"
                },
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start postgres");
        self.server = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "postgres did not start; see {}",
                self.dir.path().join("server.log").display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // Accepting connections may trail the socket by a moment.
        std::thread::sleep(Duration::from_millis(100));
    }

    fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            // SIGINT: fast shutdown, clients disconnected, nothing lost.
            let _ = Command::new("kill")
                .args(["-INT", &server.id().to_string()])
                .status();
            let _ = server.wait();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = Command::new("kill")
                .args(["-QUIT", &server.id().to_string()])
                .status();
            let _ = server.wait();
        }
    }
}

/// A cluster made once per machine and copied for each test (initdb takes
/// a second or more; a copy a tenth of that).
fn template(bin: &Path, owner: Option<(u32, u32)>) -> PathBuf {
    let version = Command::new(bin.join("postgres"))
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().replace(' ', "-"))
        .unwrap_or_default();
    let base = std::env::temp_dir();
    let template = base.join(format!(
        "patchbay-pg-template-{}-{}",
        version.replace(['(', ')', '/'], ""),
        owner.map_or(0, |o| o.0)
    ));
    if template.join("PG_VERSION").is_file() {
        return template;
    }
    let building = base.join(format!("patchbay-pg-building-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&building);
    std::fs::create_dir_all(&building).expect("template dir");
    chown(&building, owner);
    let made = as_owner(&mut Command::new(bin.join("initdb")), owner)
        .arg("-D")
        .arg(building.join("data"))
        .args([
            "-U",
            "patchbay",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("initdb");
    assert!(made.success(), "initdb failed");
    // Another test may have made it meanwhile: either copy will do.
    if std::fs::rename(building.join("data"), &template).is_err() {
        assert!(template.join("PG_VERSION").is_file(), "cluster template");
    }
    let _ = std::fs::remove_dir_all(&building);
    template
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
