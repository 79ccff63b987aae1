//! The key-custody service under load (issue 14, "Load"): `pgseal serve` on loopback with real
//! TLS, and four client processes each sending a hundred unwraps at once. Every one must be
//! answered with a file key that opens the file, and the audit log must hold exactly one intact
//! entry for each, the service's head file naming the last.
//!
//! The client processes are this test binary run again with [`CLIENT`] set in its environment:
//! the test then plays one client process (see [`client_process`]) instead of the whole test.
//! That keeps the client in the same code as the checks, needs no extra binary in the pgseal
//! package (a `[[bin]]` would be installed with it), and the client is built with whatever the
//! test is built with. `bench/custody.sh` runs the same client mode from a release build.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{PASSWORD, Service, Site, ok};
use pgseal_core::keys::Identity;
use pgseal_custody::transport::{Client, Endpoint};
use pgseal_ops::custody::{CustodyClient, Link};
use pgseal_store::Action;
use pgseal_testkit::TestPki;

/// Set (to the client's plan, JSON) in a client process's environment.
const CLIENT: &str = "PGSEAL_LOAD_CLIENT";
/// What a client process prints before its result (a JSON object), on a line of its own.
const RESULT: &str = "LOAD-RESULT ";
/// What a client process prints once it is ready; it starts when it reads a line.
const READY: &str = "LOAD-READY";
/// The test's name, for running this binary again as a client.
const TEST: &str = "four_client_processes_of_a_hundred_concurrent_unwraps_all_answered_and_audited";

/// How long the clients may take before they are killed (the test fails).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

const PROCESSES: usize = 4;
const CONCURRENT: usize = 100;

/// What a client process does (its [`CLIENT`] variable).
#[derive(serde::Serialize, serde::Deserialize)]
struct Plan {
    /// `https://127.0.0.1:PORT`.
    url: String,
    /// The CA file the service's certificate is checked against.
    ca: String,
    /// The pgseal user the requests are signed as.
    user: String,
    /// Their private key (PKCS#8 PEM, encrypted with `PGSEAL_USER_KEY_PASSWORD`, else the tests'
    /// password).
    key: String,
    /// The sealed file whose key is asked for.
    file: String,
    /// How many requests are in flight at once (one thread each).
    concurrent: usize,
    /// How many requests in all; with `seconds`, at most this many.
    requests: usize,
    /// If set, keep sending until this many seconds have passed (a benchmark).
    seconds: Option<f64>,
}

/// A client process's result.
#[derive(serde::Serialize, serde::Deserialize, Debug)]
struct Outcome {
    /// Unwraps answered with a file key that opens the file.
    answered: usize,
    /// Why the others failed (each request's error).
    failures: Vec<String>,
    /// Each answered request's latency, in microseconds, in completion order.
    latencies_us: Vec<u64>,
    /// From the start signal to the last answer.
    wall_s: f64,
}

/// The transport's client as the operations' link (what `pgseal --custody` uses too).
struct Http(Client);

impl Link for Http {
    fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> pgseal_ops::error::Result<(u16, Vec<u8>)> {
        self.0
            .send(method, path, headers, body)
            .map_err(|e| pgseal_ops::Error::Io {
                context: "reaching the custody service".into(),
                source: std::io::Error::other(e.to_string()),
            })
    }

    fn describe(&self) -> String {
        self.0.endpoint().to_string()
    }
}

/// One client process: `plan.concurrent` threads sharing one client, started together when
/// the parent says so, each unwrapping until `plan.requests` are done (or `plan.seconds` are
/// over) and checking each file key against the file's key commitment.
fn client_process(plan: &Plan) -> Outcome {
    let raw = std::fs::read(&plan.file).expect("read the sealed file");
    let prelude = pgseal_core::v2::read_prelude(&mut &raw[..]).expect("a v2 file");
    let prelude_len = prelude.slots_offset as usize + 2 * prelude.header.slot_size as usize;
    let raw = raw[..prelude_len].to_vec();
    let password = std::env::var("PGSEAL_USER_KEY_PASSWORD").unwrap_or_else(|_| PASSWORD.into());
    let key = pgseal_core::PrivateKey::from_pem(
        &std::fs::read_to_string(&plan.key).expect("read the user key"),
        &plan.key,
        || Ok(pgseal_core::Password::new(password)),
    )
    .expect("unlock the user key");
    let endpoint = Endpoint::parse(&plan.url, Some(std::path::Path::new(&plan.ca))).unwrap();
    let link = Http(Client::new(endpoint).expect("a client of the service"));
    let custody = CustodyClient::new(Box::new(link), &plan.user, key);
    let file_name = std::path::Path::new(&plan.file)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());

    let started = Arc::new(std::sync::Barrier::new(plan.concurrent + 1));
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Arc::new(std::sync::OnceLock::<Instant>::new());
    let threads: Vec<_> = (0..plan.concurrent)
        .map(|_| {
            let (custody, raw, prelude, started, next, deadline, file_name) = (
                custody.clone(),
                raw.clone(),
                pgseal_core::v2::read_prelude(&mut &raw[..]).unwrap(),
                started.clone(),
                next.clone(),
                deadline.clone(),
                file_name.clone(),
            );
            let (requests, timed) = (plan.requests, plan.seconds.is_some());
            std::thread::spawn(move || {
                let mut answered = Vec::new();
                let mut failures = Vec::new();
                started.wait();
                let deadline = *deadline.get().expect("set before the start");
                while next.fetch_add(1, Ordering::SeqCst) < requests
                    && (!timed || Instant::now() < deadline)
                {
                    let asked = Instant::now();
                    let result = custody.unwrap(&raw, file_name.as_deref()).and_then(|key| {
                        // The file key is the one the file commits to (and opens its slot).
                        let opened = prelude.check_key(&[&key as &dyn Identity])?;
                        if opened != key.recipient {
                            return Err(pgseal_ops::Error::invalid(format!(
                                "the service said {} opened the file, the file says {opened}",
                                key.recipient
                            )));
                        }
                        Ok(())
                    });
                    match result {
                        Ok(()) => answered.push(asked.elapsed().as_micros() as u64),
                        Err(e) => failures.push(e.to_string()),
                    }
                }
                (answered, failures)
            })
        })
        .collect();

    // On a line of its own: libtest has begun one with the test's name.
    println!("\n{READY}");
    std::io::stdout().flush().unwrap();
    let mut go = String::new();
    std::io::stdin().read_line(&mut go).unwrap();
    let start = Instant::now();
    deadline
        .set(start + Duration::from_secs_f64(plan.seconds.unwrap_or(0.0)))
        .unwrap();
    started.wait();
    let mut outcome = Outcome {
        answered: 0,
        failures: Vec::new(),
        latencies_us: Vec::new(),
        wall_s: 0.0,
    };
    for t in threads {
        let (answered, failures) = t.join().expect("a client thread panicked");
        outcome.answered += answered.len();
        outcome.latencies_us.extend(answered);
        outcome.failures.extend(failures);
    }
    outcome.wall_s = start.elapsed().as_secs_f64();
    outcome
}

/// Runs `plans` as client processes of this binary, starts them together and returns their
/// outcomes.
fn run_clients(plans: &[Plan]) -> Vec<Outcome> {
    let exe = std::env::current_exe().unwrap();
    let mut children: Vec<_> = plans
        .iter()
        .map(|plan| {
            Command::new(&exe)
                .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
                .env(CLIENT, serde_json::to_string(plan).unwrap())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("start a client process")
        })
        .collect();
    // Should a client hang, its process is killed (exactly it): the test then fails on its
    // missing result instead of hanging.
    let pids: Vec<i32> = children.iter().map(|c| c.id() as i32).collect();
    std::thread::spawn(move || {
        std::thread::sleep(CLIENT_TIMEOUT);
        for pid in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    });
    let mut outputs: Vec<_> = children
        .iter_mut()
        .map(|c| BufReader::new(c.stdout.take().unwrap()).lines())
        .collect();
    for lines in &mut outputs {
        loop {
            match lines.next() {
                // libtest may have begun the line with the test's name.
                Some(Ok(line)) if line.ends_with(READY) => break,
                Some(Ok(_)) => {}
                other => panic!("a client process ended before it was ready: {other:?}"),
            }
        }
    }
    for child in &mut children {
        child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    }
    let outcomes = outputs
        .into_iter()
        .map(|lines| {
            // Read to the end: the process still reports to libtest after its result.
            let all: Vec<String> = lines.map(Result::unwrap).collect();
            let line = all
                .iter()
                .find_map(|l| l.split_once(RESULT).map(|(_, r)| r.to_owned()))
                .unwrap_or_else(|| panic!("a client process ended without a result: {all:?}"));
            serde_json::from_str(&line).unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success(), "a client process failed");
    }
    outcomes
}

#[test]
fn four_client_processes_of_a_hundred_concurrent_unwraps_all_answered_and_audited() {
    if let Ok(plan) = std::env::var(CLIENT) {
        // This process is one of the clients (see the module docs).
        let outcome = client_process(&serde_json::from_str(&plan).expect("a client plan"));
        println!("{RESULT}{}", serde_json::to_string(&outcome).unwrap());
        return;
    }
    let site = Site::new();
    ok(&site.run(&["user", "role", "system_backup", "--add", "restore"]));
    site.write("a.plain", &common::data(10_000));
    ok(&site.run(&[
        "encrypt",
        "a.plain",
        "-o",
        "a.pgseal",
        "--user",
        "system_backup",
    ]));
    let pki = TestPki::new("custody-load").unwrap();
    let service = Service::tls(&site, &pki);

    let plan = || Plan {
        url: service.url.clone(),
        ca: pki.ca.display().to_string(),
        user: "system_backup".into(),
        key: site
            .path("keys/users/system_backup.key.pem")
            .display()
            .to_string(),
        file: site.path("a.pgseal").display().to_string(),
        concurrent: CONCURRENT,
        requests: CONCURRENT,
        seconds: None,
    };
    let plans: Vec<Plan> = (0..PROCESSES).map(|_| plan()).collect();
    let started = Instant::now();
    let outcomes = run_clients(&plans);
    let wall = started.elapsed();
    for outcome in &outcomes {
        assert!(
            outcome.failures.is_empty(),
            "{} of {} unwraps failed: {:?}",
            outcome.failures.len(),
            CONCURRENT,
            &outcome.failures[..outcome.failures.len().min(5)]
        );
        assert_eq!(outcome.answered, CONCURRENT, "{outcome:?}");
    }
    let slowest = outcomes
        .iter()
        .flat_map(|o| o.latencies_us.iter())
        .max()
        .unwrap();
    eprintln!(
        "{} unwraps in {:.2} s ({:.0}/s, a debug build); the slowest took {:.0} ms",
        PROCESSES * CONCURRENT,
        wall.as_secs_f64(),
        (PROCESSES * CONCURRENT) as f64 / wall.as_secs_f64(),
        *slowest as f64 / 1000.0
    );
    drop(service); // stopped cleanly: whatever it holds is written

    // Every unwrap is in the log, answered, once; the chain is intact.
    let audit = site.audit();
    let unwraps: Vec<_> = audit
        .iter()
        .filter(|e| e.entry.action == Action::CustodyUnwrap)
        .collect();
    assert_eq!(unwraps.len(), PROCESSES * CONCURRENT);
    assert!(
        unwraps.iter().all(|e| e.entry.success),
        "a refused unwrap was logged"
    );
    assert_eq!(
        audit
            .iter()
            .filter(|e| e.entry.action == Action::CustodyStart)
            .count(),
        1
    );
    let verified = site.run(&["audit", "verify", "--json"]);
    ok(&verified);
    let verified: serde_json::Value = serde_json::from_slice(&verified.stdout).unwrap();
    assert_eq!(verified["valid"], true, "{verified}");
    assert_eq!(verified["entries"], audit.len(), "{verified}");

    // The service's head is the newest entry it wrote: the last of the unwraps.
    let last = unwraps.iter().max_by_key(|e| e.seq).unwrap();
    let head: serde_json::Value =
        serde_json::from_slice(&std::fs::read(site.path("custody-head.json")).unwrap()).unwrap();
    assert_eq!(head["seq"], last.seq, "{head}");
    assert_eq!(head["entry_hash"], last.entry_hash.to_string(), "{head}");
    ok(&site.run(&[
        "audit",
        "verify",
        "--custody-head",
        site.path("custody-head.json").to_str().unwrap(),
    ]));
}
