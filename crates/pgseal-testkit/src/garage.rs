//! A throwaway single-node [Garage](https://garagehq.deuxfleurs.fr/) S3 engine for the tests:
//! [`TestGarage`].

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::{TestkitError, base_dir, describe_output, find_program, free_port, io_error, log_tail};

/// The Garage release `scripts/garage.sh` installs. [`TestGarage`] accepts any `2.5.x`.
pub const GARAGE_VERSION: &str = "2.5.0";

/// The release series [`TestGarage`] accepts: what the tests (and the S3 code they test) were
/// checked against.
const GARAGE_SERIES: &str = "2.5.";

/// Garage's `s3_region`: the region S3 clients must sign requests for.
const REGION: &str = "garage";

/// The bucket [`TestGarage::start`] creates.
const DEFAULT_BUCKET: &str = "pgseal-test";

/// How many times the server is started on fresh ports when a chosen port turns out taken.
const START_ATTEMPTS: usize = 3;

/// How long a start (or restart) may take before it is given up.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How often readiness is polled while starting.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The capacity announced in the layout. Garage only uses it to balance data between nodes;
/// it is not a quota.
const LAYOUT_CAPACITY: u64 = 1 << 30;

pub(crate) const GARAGE_HINT: &str = "run scripts/garage.sh (it installs Garage 2.5.0, once per \
                                      machine), or point PGSEAL_GARAGE_BIN at a garage 2.5.x \
                                      binary";

/// What one key may do on one bucket (Garage's bucket/key permission flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BucketPermissions {
    /// GetObject, HeadObject, ListObjects, ...
    pub read: bool,
    /// PutObject, DeleteObject, the multipart calls, ...
    pub write: bool,
    /// Bucket administration (website, CORS, lifecycle, deleting the bucket).
    pub owner: bool,
}

impl BucketPermissions {
    /// Read, write and owner.
    pub const ALL: BucketPermissions = BucketPermissions {
        read: true,
        write: true,
        owner: true,
    };
    /// Read only: no PutObject, no DeleteObject.
    pub const READ_ONLY: BucketPermissions = BucketPermissions {
        read: true,
        write: false,
        owner: false,
    };
}

/// An S3 access key created on a [`TestGarage`]. `Debug` does not show the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct GarageKey {
    /// The access key id (`GK...`): `AWS_ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// The secret access key: `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: String,
}

impl fmt::Debug for GarageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GarageKey")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// A running, throwaway single-node Garage S3 engine on loopback.
///
/// [`TestGarage::start`] writes a configuration into a fresh temporary directory (metadata and
/// data directories there too, SQLite metadata, `replication_factor = 1`, a generated
/// `rpc_secret` and admin token, the S3 API, RPC and admin API on free ports of `127.0.0.1`),
/// runs `garage server` as a child process, waits until it answers, assigns and applies the
/// one-node layout, creates an access key and a bucket ([`TestGarage::bucket`]) and gives the
/// key read, write and owner rights on it. Takes a second or two.
///
/// Talk to it with any S3 client: [`TestGarage::endpoint`], [`TestGarage::region`],
/// [`TestGarage::access_key_id`] and [`TestGarage::secret_access_key`], path-style addressing.
///
/// Dropping it kills the server (`SIGKILL` to its exact pid) and removes the directory; like
/// every [`crate::TestCluster`], it also has a watchdog that does both when the test process
/// exits without dropping it (the [`TestGarage::shared`] one, a killed test).
///
/// The administration (layout, keys, buckets) goes through `garage json-api`, Garage's admin
/// API spoken over its RPC: JSON in on stdin, JSON out, no secret on any command line.
pub struct TestGarage {
    bin: PathBuf,
    dir: PathBuf,
    config_file: PathBuf,
    log_file: PathBuf,
    /// Where the watchdog finds the server's pid.
    pid_file: PathBuf,
    s3_port: u16,
    rpc_port: u16,
    admin_port: u16,
    key: GarageKey,
    /// The `garage server` process; `None` after [`TestGarage::kill`].
    server: Mutex<Option<Child>>,
    /// The temporary directory (`dir`); `None` once removed.
    tempdir: Option<TempDir>,
    /// The watchdog process; its stdin is the pipe whose closing tells it to clean up.
    watchdog: Option<Child>,
}

impl fmt::Debug for TestGarage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestGarage")
            .field("bin", &self.bin)
            .field("dir", &self.dir)
            .field("endpoint", &self.endpoint())
            .field("key", &self.key)
            .field("pid", &self.pid())
            .finish_non_exhaustive()
    }
}

impl TestGarage {
    /// Starts a fresh single-node Garage with one bucket and one key (see the type's
    /// documentation).
    ///
    /// Errors (never panics) when the `garage` binary is missing or is not a 2.5.x release —
    /// [`TestkitError::GarageNotInstalled`], whose message says to run `scripts/garage.sh` —
    /// and when the server does not come up, quoting the tail of its log.
    pub fn start() -> Result<TestGarage, TestkitError> {
        let bin = find_garage()?;
        let base = base_dir(false);
        let tempdir = tempfile::Builder::new()
            .prefix("pgseal-garage-")
            .tempdir_in(&base)
            .map_err(io_error(format!(
                "creating a temporary directory in {}",
                base.display()
            )))?;
        let dir = tempdir.path().to_path_buf();
        // From here on, dropping `garage` (on any error below) kills whatever was started and
        // removes the directory.
        let mut garage = TestGarage {
            bin,
            config_file: dir.join("garage.toml"),
            log_file: dir.join("garage.log"),
            pid_file: dir.join("garage.pid"),
            dir,
            s3_port: 0,
            rpc_port: 0,
            admin_port: 0,
            key: GarageKey {
                access_key_id: String::new(),
                secret_access_key: String::new(),
            },
            server: Mutex::new(None),
            tempdir: Some(tempdir),
            watchdog: None,
        };
        garage.watchdog = Some(garage.spawn_watchdog()?);
        for sub in ["meta", "data"] {
            let path = garage.dir.join(sub);
            fs::create_dir(&path).map_err(io_error(format!("creating {}", path.display())))?;
        }
        let node_id = garage.first_start()?;
        garage.configure(&node_id)?;
        Ok(garage)
    }

    /// An engine shared by every test of the test binary, started on first use.
    ///
    /// Tests that want a bucket of their own create it with [`TestGarage::create_bucket`]
    /// (names are global to the engine: pick distinct ones). Tests that kill or restart the
    /// engine must start their own with [`TestGarage::start`]. The shared engine is never
    /// dropped; its watchdog kills it and removes its directory when the test process exits.
    ///
    /// # Panics
    ///
    /// When the engine cannot be started, with the [`TestGarage::start`] error message (in
    /// every test that calls this; the start is attempted only once).
    pub fn shared() -> &'static TestGarage {
        static SHARED: OnceLock<Result<TestGarage, String>> = OnceLock::new();
        match SHARED.get_or_init(|| TestGarage::start().map_err(|e| e.to_string())) {
            Ok(garage) => garage,
            Err(message) => {
                panic!("pgseal-testkit: cannot start the shared Garage S3 engine: {message}")
            }
        }
    }

    /// The S3 endpoint URL, `http://127.0.0.1:PORT` (`AWS_ENDPOINT_URL`). Address buckets
    /// path-style (`http://127.0.0.1:PORT/BUCKET/KEY`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// The region requests must be signed for (`AWS_REGION`): Garage's `s3_region`, `garage`.
    pub fn region(&self) -> &str {
        REGION
    }

    /// The access key id of the key [`TestGarage::start`] created (`AWS_ACCESS_KEY_ID`). It
    /// may read, write and administer [`TestGarage::bucket`] and every bucket made with
    /// [`TestGarage::create_bucket`].
    pub fn access_key_id(&self) -> &str {
        &self.key.access_key_id
    }

    /// The secret of that key (`AWS_SECRET_ACCESS_KEY`).
    pub fn secret_access_key(&self) -> &str {
        &self.key.secret_access_key
    }

    /// The AWS configuration that reaches this engine with its own key: endpoint, region and
    /// static credentials — built, not loaded, so tests never depend on the environment or
    /// `~/.aws` (it is what a front end hands the S3 repository).
    pub fn sdk_config(&self) -> aws_types::SdkConfig {
        self.sdk_config_for(self.access_key_id(), self.secret_access_key())
    }

    /// The same with another key (one [`TestGarage::create_key`] made, or a wrong secret).
    pub fn sdk_config_for(&self, access_key_id: &str, secret: &str) -> aws_types::SdkConfig {
        use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, SharedCredentialsProvider};
        let credentials = Credentials::new(access_key_id, secret, None, None, "pgseal-testkit");
        aws_types::SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(self.endpoint())
            .region(Region::new(self.region().to_owned()))
            .credentials_provider(SharedCredentialsProvider::new(credentials))
            .build()
    }

    /// An S3 client of this engine with its own key (path-style addressing), for what a test
    /// does behind the code under test's back.
    pub fn client(&self) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::config::Builder::from(&self.sdk_config())
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    /// The bucket [`TestGarage::start`] created: `pgseal-test`.
    pub fn bucket(&self) -> &str {
        DEFAULT_BUCKET
    }

    /// The S3 API's port on `127.0.0.1`.
    pub fn s3_port(&self) -> u16 {
        self.s3_port
    }

    /// The engine's directory: configuration, log, metadata (`meta/`) and data (`data/`).
    /// Removed when the engine is dropped.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's log (stdout and stderr of every `garage server` started), handy when a
    /// test fails.
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// The pid of the running `garage server`, `None` after [`TestGarage::kill`].
    pub fn pid(&self) -> Option<u32> {
        self.server().as_ref().map(Child::id)
    }

    /// Creates bucket `name` and gives [`TestGarage::access_key_id`] read, write and owner
    /// rights on it. Garage checks the name (S3's rules: 3 to 63 of `a-z0-9.-`); a name
    /// already taken is an error.
    pub fn create_bucket(&self, name: &str) -> Result<(), TestkitError> {
        let bucket = self.admin(
            "CreateBucket",
            Some(&json!({ "globalAlias": name })),
            &format!("creating bucket {name:?}"),
        )?;
        let bucket_id = string_field(&bucket, "id", "CreateBucket")?;
        self.allow_by_id(
            &bucket_id,
            name,
            &self.key.access_key_id,
            BucketPermissions::ALL,
        )
    }

    /// Creates another access key, with no rights on any bucket yet (grant some with
    /// [`TestGarage::allow`]): for tests of a key that may only read, or of one that may do
    /// nothing.
    pub fn create_key(&self, name: &str) -> Result<GarageKey, TestkitError> {
        let key = self.admin(
            "CreateKey",
            Some(&json!({ "name": name })),
            &format!("creating access key {name:?}"),
        )?;
        Ok(GarageKey {
            access_key_id: string_field(&key, "accessKeyId", "CreateKey")?,
            secret_access_key: string_field(&key, "secretAccessKey", "CreateKey")?,
        })
    }

    /// Grants `permissions` on bucket `bucket` to the key `access_key_id` (flags that are
    /// `false` are left as they were: this only adds rights).
    pub fn allow(
        &self,
        bucket: &str,
        access_key_id: &str,
        permissions: BucketPermissions,
    ) -> Result<(), TestkitError> {
        let info = self.admin(
            "GetBucketInfo",
            Some(&json!({ "globalAlias": bucket })),
            &format!("looking up bucket {bucket:?}"),
        )?;
        let bucket_id = string_field(&info, "id", "GetBucketInfo")?;
        self.allow_by_id(&bucket_id, bucket, access_key_id, permissions)
    }

    /// Stops the server abruptly: `SIGKILL` to its pid, then waits for it to be gone. The
    /// data stays; [`TestGarage::restart`] brings it back. Does nothing when it is not
    /// running.
    pub fn kill(&self) -> Result<(), TestkitError> {
        let mut server = self.server();
        kill_server(&mut server, &self.pid_file)
    }

    /// Starts the server again on the same ports, directories, layout, keys and buckets
    /// (after killing it, if it runs), and waits until it serves S3 requests.
    pub fn restart(&self) -> Result<(), TestkitError> {
        let mut server = self.server();
        kill_server(&mut server, &self.pid_file)?;
        let child = self.spawn_server()?;
        *server = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        self.wait_until(&mut server, deadline, "restart", |garage| {
            garage.healthy_and_listening()
        })?;
        Ok(())
    }

    /// Starts the server for the first time, on fresh ports (again on others when one is
    /// taken), and returns its node id once it answers.
    fn first_start(&mut self) -> Result<String, TestkitError> {
        let mut failures = Vec::new();
        for attempt in 1..=START_ATTEMPTS {
            self.s3_port = free_port()?;
            self.rpc_port = free_port()?;
            self.admin_port = free_port()?;
            self.write_config()?;
            let child = self.spawn_server()?;
            let mut server = self.server();
            *server = Some(child);
            let deadline = Instant::now() + START_TIMEOUT;
            let result = self.wait_until(&mut server, deadline, "start", |garage| {
                let status = garage.try_admin("GetClusterStatus", None)?;
                status["nodes"][0]["id"].as_str().map(str::to_owned)
            });
            match result {
                Ok(node_id) => return Ok(node_id),
                Err(error) => {
                    kill_server(&mut server, &self.pid_file)?;
                    let log = log_tail(&self.log_file);
                    let port_taken =
                        log.contains("Address already in use") || log.contains("address in use");
                    failures.push(format!(
                        "attempt {attempt} (S3 port {}, RPC port {}, admin port {}): {error}",
                        self.s3_port, self.rpc_port, self.admin_port
                    ));
                    if !port_taken {
                        break;
                    }
                    // A fresh log for the next attempt, so its tail is about that one.
                    fs::remove_file(&self.log_file)
                        .map_err(io_error(format!("removing {}", self.log_file.display())))?;
                }
            }
        }
        Err(TestkitError::Command {
            command: format!("{} server", self.bin.display()),
            details: failures.join("\n"),
        })
    }

    /// Lays out the single node, waits until the cluster is healthy and the S3 port accepts
    /// connections, creates the key and the default bucket.
    fn configure(&mut self, node_id: &str) -> Result<(), TestkitError> {
        let layout = json!({
            "roles": [{
                "id": node_id,
                "zone": "dc1",
                "capacity": LAYOUT_CAPACITY,
                "tags": [],
            }]
        });
        self.admin(
            "UpdateClusterLayout",
            Some(&layout),
            "assigning the node's role in the layout",
        )?;
        self.admin(
            "ApplyClusterLayout",
            Some(&json!({ "version": 1 })),
            "applying layout version 1",
        )?;
        {
            let mut server = self.server();
            let deadline = Instant::now() + START_TIMEOUT;
            self.wait_until(&mut server, deadline, "start", |garage| {
                garage.healthy_and_listening()
            })?;
        }
        self.key = self.create_key("pgseal-testkit")?;
        self.create_bucket(DEFAULT_BUCKET)
    }

    /// `Some(())` once the cluster reports `healthy` with every partition served and the S3
    /// port accepts a connection.
    fn healthy_and_listening(&self) -> Option<()> {
        let health = self.try_admin("GetClusterHealth", None)?;
        let all_ok = health["status"] == "healthy"
            && health["partitions"].as_u64().is_some_and(|n| n > 0)
            && health["partitionsAllOk"] == health["partitions"];
        let address = SocketAddr::from(([127, 0, 0, 1], self.s3_port));
        let listening = TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_ok();
        (all_ok && listening).then_some(())
    }

    /// Polls `ready` until it returns `Some`, failing when the server exits or `deadline`
    /// passes (with the tail of the server log).
    fn wait_until<T>(
        &self,
        server: &mut Option<Child>,
        deadline: Instant,
        what: &str,
        mut ready: impl FnMut(&TestGarage) -> Option<T>,
    ) -> Result<T, TestkitError> {
        loop {
            if let Some(value) = ready(self) {
                return Ok(value);
            }
            let exited = match server.as_mut() {
                Some(child) => child
                    .try_wait()
                    .map_err(io_error("checking on garage server"))?,
                None => None,
            };
            let problem = if let Some(status) = exited {
                Some(format!("garage server exited ({status})"))
            } else if server.is_none() {
                Some("garage server is not running".to_owned())
            } else if Instant::now() > deadline {
                Some(format!("garage server not ready after {START_TIMEOUT:?}"))
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(TestkitError::Command {
                    command: format!("{what} of garage server ({})", self.config_file.display()),
                    details: format!(
                        "{problem}\n--- tail of the server log {} ---\n{}",
                        self.log_file.display(),
                        log_tail(&self.log_file)
                    ),
                });
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    fn allow_by_id(
        &self,
        bucket_id: &str,
        bucket: &str,
        access_key_id: &str,
        permissions: BucketPermissions,
    ) -> Result<(), TestkitError> {
        let request = json!({
            "bucketId": bucket_id,
            "accessKeyId": access_key_id,
            "permissions": {
                "read": permissions.read,
                "write": permissions.write,
                "owner": permissions.owner,
            },
        });
        self.admin(
            "AllowBucketKey",
            Some(&request),
            &format!("granting {permissions:?} on bucket {bucket:?} to key {access_key_id}"),
        )?;
        Ok(())
    }

    /// Runs `garage json-api ENDPOINT` with `payload` (if any) on stdin; returns the JSON it
    /// printed. `what` says what it was for, in the error.
    fn admin(
        &self,
        endpoint: &str,
        payload: Option<&Value>,
        what: &str,
    ) -> Result<Value, TestkitError> {
        let command = format!("garage json-api {endpoint} ({what})");
        let output = self.run_admin(endpoint, payload, &command)?;
        if !output.status.success() {
            return Err(TestkitError::Command {
                command,
                details: describe_output(&output),
            });
        }
        // Not quoted in the error: a key's response holds its secret.
        serde_json::from_slice(&output.stdout).map_err(|error| TestkitError::Command {
            command,
            details: format!("its output is not JSON: {error}"),
        })
    }

    /// [`TestGarage::admin`] for polling: `None` on any failure.
    fn try_admin(&self, endpoint: &str, payload: Option<&Value>) -> Option<Value> {
        let output = self.run_admin(endpoint, payload, endpoint).ok()?;
        if !output.status.success() {
            return None;
        }
        serde_json::from_slice(&output.stdout).ok()
    }

    fn run_admin(
        &self,
        endpoint: &str,
        payload: Option<&Value>,
        what: &str,
    ) -> Result<Output, TestkitError> {
        let mut cmd = self.garage_command();
        cmd.arg("json-api").arg(endpoint);
        match payload {
            Some(payload) => {
                cmd.arg("-");
                crate::run_with_stdin(cmd, payload.to_string().into_bytes(), what)
            }
            None => cmd
                .stdin(Stdio::null())
                .output()
                .map_err(io_error(format!("running {what}"))),
        }
    }

    /// `garage -c CONFIG`, with an environment that cannot steer it elsewhere.
    fn garage_command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-c").arg(&self.config_file).current_dir(&self.dir);
        garage_env(&mut cmd);
        cmd
    }

    /// Spawns `garage server`, output appended to the log, and records its pid for the
    /// watchdog.
    fn spawn_server(&self) -> Result<Child, TestkitError> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_file)
            .map_err(io_error(format!("opening {}", self.log_file.display())))?;
        let log_err = log
            .try_clone()
            .map_err(io_error(format!("opening {}", self.log_file.display())))?;
        let mut cmd = self.garage_command();
        cmd.arg("server")
            .env("RUST_LOG", "garage=info,netapp=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        let mut child = cmd
            .spawn()
            .map_err(io_error(format!("spawning {} server", self.bin.display())))?;
        if let Err(error) = fs::write(&self.pid_file, format!("{}\n", child.id())) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io_error(format!("writing {}", self.pid_file.display()))(
                error,
            ));
        }
        Ok(child)
    }

    /// Writes `garage.toml` (mode 0600: it holds the RPC secret and the admin token).
    fn write_config(&self) -> Result<(), TestkitError> {
        let path = |sub: &str| -> Result<String, TestkitError> {
            let path = self.dir.join(sub);
            path.to_str()
                .map(toml_string)
                .ok_or_else(|| TestkitError::Io {
                    context: format!(
                        "{} is not UTF-8, which a Garage configuration needs; set \
                     PGSEAL_TEST_TMPDIR to another directory",
                        path.display()
                    ),
                    source: io::Error::from(io::ErrorKind::InvalidInput),
                })
        };
        let config = format!(
            r#"# Written by pgseal-testkit: a throwaway single-node Garage for the tests.
metadata_dir = {meta}
data_dir = {data}
db_engine = "sqlite"
metadata_fsync = false
data_fsync = false
replication_factor = 1
# Backups are encrypted: compressing them is wasted work.
compression_level = "none"
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{rpc_secret}"

[s3_api]
s3_region = "{REGION}"
api_bind_addr = "127.0.0.1:{s3}"

[admin]
api_bind_addr = "127.0.0.1:{admin}"
admin_token = "{admin_token}"
"#,
            meta = path("meta")?,
            data = path("data")?,
            rpc = self.rpc_port,
            s3 = self.s3_port,
            admin = self.admin_port,
            rpc_secret = random_hex(32)?,
            admin_token = random_hex(32)?,
        );
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&self.config_file)
            .map_err(io_error(format!("creating {}", self.config_file.display())))?;
        file.write_all(config.as_bytes())
            .map_err(io_error(format!("writing {}", self.config_file.display())))
    }

    /// Spawns the watchdog: it waits for EOF on its stdin, then kills the server whose pid
    /// is in the pid file (if that process still runs with this engine's configuration) and
    /// removes the directory.
    fn spawn_watchdog(&self) -> Result<Child, TestkitError> {
        // Positional parameters, so no path needs shell quoting:
        // $1 the engine's directory, $2 the pid file, $3 the configuration file.
        const SCRIPT: &str = r#"
trap '' HUP INT QUIT PIPE
read -r _ignored
if [ -f "$2" ] && read -r pid < "$2"; then
    if tr '\0' '\n' < "/proc/$pid/cmdline" 2>/dev/null | grep -qxF -- "$3"; then
        kill -KILL "$pid" 2>/dev/null
        i=0
        while [ -d "/proc/$pid" ] && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    fi
fi
rm -rf "$1"
"#;
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(SCRIPT)
            .arg("pgseal-testkit-garage-watchdog")
            .arg(&self.dir)
            .arg(&self.pid_file)
            .arg(&self.config_file)
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: a Ctrl-C, or a test runner killing the test's process
            // group, must not kill it too.
            .process_group(0);
        cmd.spawn()
            .map_err(io_error("spawning the cleanup watchdog (/bin/sh)"))
    }

    fn server(&self) -> MutexGuard<'_, Option<Child>> {
        // A panic while holding the lock leaves nothing half-done worth refusing.
        self.server
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for TestGarage {
    /// Kills the server, removes the directory, and lets the watchdog go.
    fn drop(&mut self) {
        let mut server = self.server.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(error) = kill_server(&mut server, &self.pid_file) {
            eprintln!("pgseal-testkit: {error} (the watchdog tries again)");
        }
        drop(server);
        if let Some(tempdir) = self.tempdir.take() {
            if let Err(error) = tempdir.close() {
                eprintln!(
                    "pgseal-testkit: could not remove {}: {error} (the watchdog tries again)",
                    self.dir.display()
                );
            }
        }
        if let Some(mut watchdog) = self.watchdog.take() {
            // Closing its stdin wakes it; with the directory gone it has nothing left to do.
            drop(watchdog.stdin.take());
            let _ = watchdog.wait();
        }
    }
}

/// `SIGKILL` to the server's exact pid (never a process group), reaps it, forgets its pid.
fn kill_server(server: &mut Option<Child>, pid_file: &Path) -> Result<(), TestkitError> {
    if let Some(mut child) = server.take() {
        // An error here means it already exited; `wait` reaps it either way.
        let _ = child.kill();
        child.wait().map_err(io_error(format!(
            "waiting for garage server (pid {})",
            child.id()
        )))?;
    }
    match fs::remove_file(pid_file) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => {
            Err(io_error(format!("removing {}", pid_file.display()))(error))
        }
        _ => Ok(()),
    }
}

/// The environment of every `garage` the testkit runs: none of Garage's own overrides
/// (`GARAGE_RPC_SECRET`, `GARAGE_CONFIG_FILE`, ...) or of the logger's, no colours.
fn garage_env(cmd: &mut Command) {
    for (name, _) in std::env::vars_os() {
        let bytes = name.as_encoded_bytes();
        if bytes.starts_with(b"GARAGE_") || bytes == b"RUST_LOG" {
            cmd.env_remove(&name);
        }
    }
    cmd.env("NO_COLOR", "1");
}

/// The `garage` binary to use, found once per process: `PGSEAL_GARAGE_BIN` if set, else
/// where `scripts/garage.sh` installs it, else `garage` on `PATH`; it must report a 2.5.x
/// version.
fn find_garage() -> Result<PathBuf, TestkitError> {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    FOUND
        .get_or_init(search_garage)
        .clone()
        .map_err(|searched| TestkitError::GarageNotInstalled { searched })
}

fn search_garage() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("PGSEAL_GARAGE_BIN").filter(|b| !b.is_empty()) {
        let bin = PathBuf::from(bin);
        return match check_garage(&bin) {
            Ok(()) => Ok(bin),
            Err(problem) => Err(format!("PGSEAL_GARAGE_BIN={}: {problem}", bin.display())),
        };
    }
    let mut problems = Vec::new();
    let mut candidates = Vec::new();
    match install_dir() {
        Some(dir) => candidates.push(dir.join("bin").join("garage")),
        None => problems.push("no HOME to find scripts/garage.sh's install in".to_owned()),
    }
    match find_program("garage", &[]) {
        Some(bin) => candidates.push(bin),
        None => problems.push("no garage on PATH".to_owned()),
    }
    for bin in candidates {
        match check_garage(&bin) {
            Ok(()) => return Ok(bin),
            Err(problem) => problems.push(format!("{}: {problem}", bin.display())),
        }
    }
    Err(problems.join("; "))
}

/// Where `scripts/garage.sh` installs Garage: `$XDG_CACHE_HOME/pgseal/garage-2.5.0`, or
/// `$HOME/.cache/pgseal/garage-2.5.0`.
fn install_dir() -> Option<PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|dir| dir.is_absolute())
                .map(|home| home.join(".cache"))
        })?;
    Some(
        cache
            .join("pgseal")
            .join(format!("garage-{GARAGE_VERSION}")),
    )
}

/// Whether `bin` runs and reports a 2.5.x version; if not, why.
fn check_garage(bin: &Path) -> Result<(), String> {
    if !bin.is_file() {
        return Err("no such file".to_owned());
    }
    let mut cmd = Command::new(bin);
    cmd.arg("--version").stdin(Stdio::null());
    garage_env(&mut cmd);
    let output = cmd
        .output()
        .map_err(|error| format!("cannot run it: {error}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    match parse_version(&text) {
        Some(version) if output.status.success() && version.starts_with(GARAGE_SERIES) => Ok(()),
        Some(version) => Err(format!(
            "it is Garage {version}, the tests need {GARAGE_SERIES}x"
        )),
        None => Err(format!(
            "`--version` printed no Garage version: {}",
            describe_output(&output)
        )),
    }
}

/// The version in `garage --version`'s output: `garage cargo:2.5.0 [features: ...]` (a
/// `cargo install` build) or `garage v2.5.0 [...]` (a release build).
fn parse_version(output: &str) -> Option<String> {
    let mut words = output.lines().next()?.split_whitespace();
    if words.next()? != "garage" {
        return None;
    }
    let word = words.next()?;
    let version = word
        .strip_prefix("cargo:")
        .or_else(|| word.strip_prefix("git:"))
        .unwrap_or(word);
    let version = version.strip_prefix('v').unwrap_or(version);
    version
        .starts_with(|c: char| c.is_ascii_digit())
        .then(|| version.to_owned())
}

/// `string[field]` of an admin API response, as a string.
fn string_field(value: &Value, field: &str, endpoint: &str) -> Result<String, TestkitError> {
    value[field]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| TestkitError::Command {
            command: format!("garage json-api {endpoint}"),
            details: format!("its response has no string field {field:?}"),
        })
}

/// `bytes` random bytes from the kernel, hex-encoded.
fn random_hex(bytes: usize) -> Result<String, TestkitError> {
    let mut buffer = vec![0u8; bytes];
    File::open("/dev/urandom")
        .and_then(|mut file| file.read_exact(&mut buffer))
        .map_err(io_error("reading /dev/urandom"))?;
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(bytes * 2);
    for byte in buffer {
        hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
        hex.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    Ok(hex)
}

/// `value` as a TOML basic string.
fn toml_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_cargo_and_release_builds() {
        assert_eq!(
            parse_version("garage cargo:2.5.0 [features: bundled-libs, sqlite]\n").as_deref(),
            Some("2.5.0")
        );
        assert_eq!(
            parse_version("garage v2.5.1 [features: k2v, lmdb]").as_deref(),
            Some("2.5.1")
        );
        assert_eq!(parse_version("garage unknown [features: ]"), None);
        assert_eq!(parse_version("minio version 1"), None);
        assert_eq!(parse_version(""), None);
    }

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_string("/tmp/x"), r#""/tmp/x""#);
        assert_eq!(toml_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(toml_string("a\nb"), r#""a\u000Ab""#);
    }

    #[test]
    fn random_hex_is_hex_and_random() {
        let a = random_hex(32).unwrap();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, random_hex(32).unwrap());
    }

    #[test]
    fn keys_do_not_show_their_secret() {
        let key = GarageKey {
            access_key_id: "GK0123".to_owned(),
            secret_access_key: "s3cr3t".to_owned(),
        };
        let shown = format!("{key:?}");
        assert!(shown.contains("GK0123"), "{shown}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }

    #[test]
    fn not_installed_message_says_to_run_the_script() {
        let message = TestkitError::GarageNotInstalled {
            searched: "nowhere".to_owned(),
        }
        .to_string();
        assert!(message.contains("run scripts/garage.sh"), "{message}");
        assert!(message.contains("nowhere"), "{message}");
    }
}
