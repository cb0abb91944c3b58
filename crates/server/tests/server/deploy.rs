//! `deploy/` checked against the binary it deploys.
//!
//! Every YAML file under `deploy/` (compose and Kubernetes, multi-document files included) is
//! parsed and turned into the Strata processes it runs: the subcommand, the environment the
//! process would see (image `ENV`, then compose `environment` with its `${...}` taken from
//! `.env.example`, or Kubernetes `envFrom` ConfigMaps/Secrets then `env`), its probes and its stop
//! window. Then:
//!
//! - every variable name set anywhere is one Strata reads, and each process's environment loads
//!   through `Settings::from_figment` fed as `Settings::from_env` feeds it (unknown `STRATA_*`
//!   names are refused);
//! - every probe, health check, scrape annotation and load-balancer check targets the port that
//!   process really listens on (`STRATA_PORT`; `STRATA_METRICS_PORT` for the API's scrape, which
//!   nothing public routes to; `STRATA_WORKER_METRICS_PORT` for the worker) on an address
//!   reachable from outside the container, and its path answers 200 from the real
//!   `strata serve` / `strata worker` run with the manifests' own settings (and the scrape path
//!   404 on the API's port);
//! - commands are real subcommands of the binary;
//! - stop windows outlast the shutdown sequence (preStop, readiness grace, drain);
//! - Services, NetworkPolicies, the HPA and the PDB point at the right pods and ports;
//! - the Dockerfile's user, entry point and exposed port agree with all of the above;
//! - `docker compose config` and `kubectl kustomize` accept the files, when those tools exist;
//! - each kustomization applies every manifest beside it but never a Secret (the operator creates
//!   those once, from `secret.yaml`'s template), and a workload an autoscaler scales sets no
//!   `replicas` of its own: either would be undone by the next `kubectl apply -k`;
//! - the PodMonitor scrapes each process's metrics port, by the port's name, under the `job` the
//!   alert rules select;
//! - the PrometheusRule is `deploy/prometheus/strata-rules.yaml` word for word; every alert has a
//!   severity, a summary, a description and a runbook that is a heading of docs/operations.md,
//!   whose alert table names exactly these alerts; each has promtool cases where it fires and
//!   where it stays quiet, and promtool passes them when installed (`cargo xtask test` installs
//!   it). The metric names the rules and the dashboard query: tests/monitoring.rs.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers fail loudly by design

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use clap::Parser as _;
use figment::Figment;
use secrecy::ExposeSecret as _;
use serde::Deserialize as _;
use serde_yaml_ng::Value;
use strata_postgres::testing::TestDatabase;
use strata_server::cli::{Cli, Command as CliCommand};
use strata_server::config::UnknownVariable;
use strata_server::{ConfigError, Settings};

/// Compose stops a container with SIGKILL this long after SIGTERM unless told otherwise.
const COMPOSE_DEFAULT_STOP_SECS: u64 = 10;
/// Kubernetes' default terminationGracePeriodSeconds.
const KUBERNETES_DEFAULT_GRACE_SECS: u64 = 30;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn deploy_dir() -> PathBuf {
    repository().join("deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn relative(path: &Path) -> String {
    path.strip_prefix(repository())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Fails with every problem found, not just the first.
fn assert_no_problems(what: &str, problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{what}:\n  - {}",
        problems.join("\n  - ")
    );
}

// ---------------------------------------------------------------------------------------------
// YAML
// ---------------------------------------------------------------------------------------------

/// Every `.yaml` / `.yml` file under `dir`, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("deploy/ is readable") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            files.extend(yaml_files(&path));
        } else if path
            .extension()
            .is_some_and(|ext| ext == "yaml" || ext == "yml")
        {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// Every document of a YAML file, with merge keys (`<<: *anchor`, nested too) applied as compose
/// applies them; empty documents dropped.
fn documents(path: &Path) -> Vec<Value> {
    let text = read(path);
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|document| {
            let mut value = Value::deserialize(document)
                .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", relative(path)));
            // One pass resolves one level of merges: an anchor merged in may itself merge another.
            for _ in 0..8 {
                value
                    .apply_merge()
                    .unwrap_or_else(|e| panic!("{}: bad merge key: {e}", relative(path)));
                if !has_merge_key(&value) {
                    break;
                }
            }
            assert!(
                !has_merge_key(&value),
                "{}: merge keys nested too deep",
                relative(path)
            );
            value
        })
        .filter(|value| !value.is_null())
        .collect()
}

fn has_merge_key(value: &Value) -> bool {
    match value {
        Value::Mapping(mapping) => {
            mapping.contains_key("<<") || mapping.values().any(has_merge_key)
        }
        Value::Sequence(items) => items.iter().any(has_merge_key),
        Value::Tagged(tagged) => has_merge_key(&tagged.value),
        _ => false,
    }
}

/// A scalar as the text an environment variable would hold.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn str_at<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

fn sequence(value: &Value) -> &[Value] {
    value.as_sequence().map(Vec::as_slice).unwrap_or_default()
}

/// `["a", "b"]` or `"a b"` as words.
fn words(value: &Value) -> Vec<String> {
    match value {
        Value::Sequence(items) => items.iter().filter_map(scalar).collect(),
        Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// The image (deploy/Dockerfile)
// ---------------------------------------------------------------------------------------------

/// What the runtime stage of the Dockerfile says.
#[derive(Debug, Default)]
struct Image {
    /// The runtime stage's base image (its `FROM`).
    base: String,
    env: BTreeMap<String, String>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    expose: Vec<u16>,
    user: Option<String>,
    /// Sources of `COPY` lines without `--from` in any stage (paths in the build context).
    context_copies: Vec<String>,
}

fn image() -> Image {
    let text = read(&deploy_dir().join("Dockerfile"));
    // Join continuation lines, drop comments.
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                instructions.push(std::mem::take(&mut current));
            }
        }
    }
    let mut image = Image::default();
    for instruction in instructions {
        let (keyword, rest) = instruction
            .split_once(char::is_whitespace)
            .unwrap_or((instruction.as_str(), ""));
        let rest = rest.trim();
        match keyword.to_ascii_uppercase().as_str() {
            // A new stage: only the last one's settings reach the image.
            "FROM" => {
                let copies = std::mem::take(&mut image.context_copies);
                image = Image {
                    base: rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                    context_copies: copies,
                    ..Image::default()
                };
            }
            "ENV" => {
                for pair in rest.split_whitespace() {
                    let (name, value) = pair
                        .split_once('=')
                        .unwrap_or_else(|| panic!("Dockerfile: write ENV as NAME=value: {rest}"));
                    image
                        .env
                        .insert(name.to_owned(), value.trim_matches('"').to_owned());
                }
            }
            "ENTRYPOINT" => {
                image.entrypoint = serde_json::from_str(rest)
                    .unwrap_or_else(|_| panic!("Dockerfile: ENTRYPOINT must be exec form: {rest}"));
            }
            "CMD" => {
                image.cmd = serde_json::from_str(rest)
                    .unwrap_or_else(|_| panic!("Dockerfile: CMD must be exec form: {rest}"));
            }
            "EXPOSE" => {
                for port in rest.split_whitespace() {
                    let number = port.split('/').next().unwrap_or(port);
                    image
                        .expose
                        .push(number.parse().expect("EXPOSE takes port numbers"));
                }
            }
            "USER" => image.user = Some(rest.to_owned()),
            "COPY" | "ADD" => {
                let parts: Vec<&str> = rest.split_whitespace().collect();
                if parts.iter().any(|p| p.starts_with("--from")) {
                    continue;
                }
                let paths: Vec<&str> = parts.into_iter().filter(|p| !p.starts_with("--")).collect();
                if let Some((_destination, sources)) = paths.split_last() {
                    image
                        .context_copies
                        .extend(sources.iter().map(|s| (*s).to_owned()));
                }
            }
            _ => {}
        }
    }
    image
}

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

/// Where a probe comes from, which decides the path it should use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProbeKind {
    /// Kubernetes startupProbe.
    Startup,
    /// Kubernetes readinessProbe.
    Readiness,
    /// Kubernetes livenessProbe.
    Liveness,
    /// A compose healthcheck (gates `depends_on: service_healthy`).
    Healthcheck,
    /// Prometheus scrape annotations.
    Scrape,
}

#[derive(Debug, Clone)]
struct Probe {
    kind: ProbeKind,
    path: String,
    port: u16,
}

/// Where a process is declared.
#[derive(Debug)]
enum Source {
    Compose {
        service: String,
    },
    Kubernetes {
        kind: String,
        name: String,
        pod_labels: BTreeMap<String, String>,
        pod_spec: Value,
        container: Value,
    },
}

/// One Strata process as a manifest runs it.
#[derive(Debug)]
struct Process {
    origin: String,
    source: Source,
    /// Arguments after the `strata` entry point (`["serve"]`, ...).
    args: Vec<String>,
    /// The environment the process sees.
    env: BTreeMap<String, String>,
    /// Every name the manifest sets for it (including ones whose value the test cannot know).
    env_names: BTreeSet<String>,
    probes: Vec<Probe>,
    /// Ports the manifest declares for the container (containerPort / expose), by name too.
    declared_ports: BTreeMap<String, u16>,
    /// Seconds between the start of termination and SIGKILL.
    stop_window_secs: u64,
    /// Seconds a preStop hook sleeps before SIGTERM is sent.
    pre_stop_sleep_secs: u64,
    /// Commands the manifest runs inside the container (health checks, exec hooks), as written.
    container_commands: Vec<Vec<String>>,
}

impl Process {
    fn subcommand(&self) -> &str {
        self.args.first().map(String::as_str).unwrap_or_default()
    }

    fn settings(&self) -> Settings {
        load_settings(&self.env).unwrap_or_else(|error| {
            panic!("{}: Strata refuses its environment: {error}", self.origin)
        })
    }

    /// The port this process answers HTTP on, if any.
    fn listening_port(&self) -> Option<u16> {
        let settings = self.settings();
        match self.subcommand() {
            "serve" => Some(settings.http.port),
            "worker" => settings.worker.metrics_port,
            _ => None,
        }
    }

    /// The port this process serves `GET /metrics` on, if any.
    fn metrics_port(&self) -> Option<u16> {
        let settings = self.settings();
        match self.subcommand() {
            "serve" => Some(settings.telemetry.metrics_port),
            "worker" => settings.worker.metrics_port,
            _ => None,
        }
    }

    /// Every port this process listens on.
    fn serving_ports(&self) -> BTreeSet<u16> {
        self.listening_port()
            .into_iter()
            .chain(self.metrics_port())
            .collect()
    }
}

/// Everything under deploy/, parsed.
struct Deploy {
    image: Image,
    dotenv: BTreeMap<String, String>,
    compose: Option<(PathBuf, Value)>,
    /// Kubernetes objects, with the file each came from.
    objects: Vec<(PathBuf, Value)>,
    processes: Vec<Process>,
}

impl Deploy {
    fn load() -> Self {
        let image = image();
        let dotenv = dotenv(&deploy_dir().join(".env.example"));
        let mut compose = None;
        let mut objects = Vec::new();
        for path in yaml_files(&deploy_dir()) {
            let docs = documents(&path);
            assert!(!docs.is_empty(), "{} is empty", relative(&path));
            for doc in docs {
                if doc.get("services").is_some_and(Value::is_mapping) {
                    assert!(
                        compose.is_none(),
                        "more than one compose file; teach this test which is which"
                    );
                    compose = Some((path.clone(), interpolate_tree(&doc, &dotenv, &path)));
                } else if str_at(&doc, "apiVersion").is_some() && str_at(&doc, "kind").is_some() {
                    objects.push((path.clone(), doc));
                } else if doc.get("groups").is_some() || doc.get("rule_files").is_some() {
                    // A Prometheus rules file or its promtool tests: see the alert checks below.
                } else {
                    panic!(
                        "{}: a YAML document that is neither a compose file nor a Kubernetes \
                         object; this test cannot check it",
                        relative(&path)
                    );
                }
            }
        }
        let mut deploy = Self {
            image,
            dotenv,
            compose,
            objects,
            processes: Vec::new(),
        };
        deploy.processes = deploy.compose_processes();
        deploy.processes.extend(deploy.kubernetes_processes());
        deploy
    }

    fn objects_of(&self, kind: &str) -> impl Iterator<Item = &(PathBuf, Value)> {
        let kind = kind.to_owned();
        self.objects
            .iter()
            .filter(move |(_, object)| str_at(object, "kind") == Some(kind.as_str()))
    }

    fn object(&self, kind: &str, name: &str) -> Option<&Value> {
        self.objects_of(kind)
            .map(|(_, object)| object)
            .find(|object| str_at(&object["metadata"], "name") == Some(name))
    }

    fn compose_services(&self) -> Vec<(String, &Value)> {
        let Some((_, compose)) = &self.compose else {
            return Vec::new();
        };
        compose["services"]
            .as_mapping()
            .expect("services is a mapping")
            .iter()
            .map(|(name, service)| (scalar(name).expect("service name"), service))
            .collect()
    }

    fn compose_processes(&self) -> Vec<Process> {
        let Some((path, _)) = &self.compose else {
            return Vec::new();
        };
        let mut processes = Vec::new();
        for (name, service) in self.compose_services() {
            let image = str_at(service, "image").unwrap_or_default();
            if service.get("build").is_none() && !is_strata_image(image) {
                continue;
            }
            let origin = format!("{} service {name}", relative(path));
            if let Some(entrypoint) = service.get("entrypoint") {
                assert_runs_strata(&origin, &words(entrypoint));
            }
            let args = match service.get("command") {
                Some(command) => words(command),
                None => self.image.cmd.clone(),
            };
            let mut env = self.image.env.clone();
            let mut env_names = BTreeSet::new();
            assert!(
                service.get("env_file").is_none(),
                "{origin}: env_file is not understood by this test; use environment with ${{...}} \
                 references to deploy/.env"
            );
            match service.get("environment") {
                Some(Value::Mapping(variables)) => {
                    for (variable, value) in variables {
                        let variable = scalar(variable).expect("variable name");
                        env_names.insert(variable.clone());
                        if let Some(value) = scalar(value) {
                            env.insert(variable, value);
                        }
                    }
                }
                Some(Value::Sequence(items)) => {
                    for item in items {
                        let item = scalar(item).expect("NAME=value");
                        let (variable, value) = item.split_once('=').unwrap_or((&item, ""));
                        env_names.insert(variable.to_owned());
                        if item.contains('=') {
                            env.insert(variable.to_owned(), value.to_owned());
                        }
                    }
                }
                Some(other) => panic!("{origin}: environment must be a mapping or list: {other:?}"),
                None => {}
            }
            let mut probes = Vec::new();
            let mut container_commands = Vec::new();
            let healthcheck = &service["healthcheck"];
            if !healthcheck.is_null() && healthcheck.get("disable") != Some(&Value::Bool(true)) {
                let test = words(&healthcheck["test"]);
                // The image has no shell: only the exec form (`CMD`) can run, and only strata.
                let command = match test.split_first() {
                    Some((form, command)) if form == "CMD" => command.to_vec(),
                    _ => test.clone(),
                };
                container_commands.push(test.clone());
                if command.get(1).map(String::as_str) == Some("healthcheck") {
                    // Parsed by the binary's own parser, resolved with the process's settings.
                    let parsed = Cli::try_parse_from(&command).unwrap_or_else(|error| {
                        panic!("{origin}: strata refuses the health check {test:?}: {error}")
                    });
                    let Some(CliCommand::Healthcheck(probe)) = parsed.command else {
                        unreachable!("the second word is healthcheck")
                    };
                    let settings = load_settings(&env).unwrap_or_else(|error| {
                        panic!("{origin}: Strata refuses its environment: {error}")
                    });
                    let (port, path) = probe.target(&settings).unwrap_or_else(|error| {
                        panic!("{origin}: health check {test:?}: {error:#}")
                    });
                    probes.push(Probe {
                        kind: ProbeKind::Healthcheck,
                        path,
                        port,
                    });
                }
            }
            let declared_ports = sequence(&service["expose"])
                .iter()
                .filter_map(scalar)
                .map(|port| {
                    let number = port.split('/').next().unwrap_or(&port).to_owned();
                    let parsed = number.parse().expect("expose takes port numbers");
                    (number, parsed)
                })
                .collect();
            let stop_window_secs = str_at(service, "stop_grace_period")
                .map(|raw| duration_secs(raw, &origin))
                .unwrap_or(COMPOSE_DEFAULT_STOP_SECS);
            processes.push(Process {
                origin,
                source: Source::Compose { service: name },
                args,
                env,
                env_names,
                probes,
                declared_ports,
                stop_window_secs,
                pre_stop_sleep_secs: 0,
                container_commands,
            });
        }
        processes
    }

    fn kubernetes_processes(&self) -> Vec<Process> {
        let mut processes = Vec::new();
        for (path, object) in &self.objects {
            let kind = str_at(object, "kind").unwrap_or_default();
            let template = match kind {
                "Deployment" | "StatefulSet" | "DaemonSet" | "Job" | "ReplicaSet" => {
                    &object["spec"]["template"]
                }
                "CronJob" => &object["spec"]["jobTemplate"]["spec"]["template"],
                _ => continue,
            };
            let name = str_at(&object["metadata"], "name")
                .unwrap_or_default()
                .to_owned();
            let pod_spec = &template["spec"];
            let pod_labels = labels(&template["metadata"]["labels"]);
            let annotations = labels(&template["metadata"]["annotations"]);
            let stop_window_secs = pod_spec["terminationGracePeriodSeconds"]
                .as_u64()
                .unwrap_or(KUBERNETES_DEFAULT_GRACE_SECS);
            let containers = sequence(&pod_spec["initContainers"])
                .iter()
                .chain(sequence(&pod_spec["containers"]));
            for container in containers {
                let image = str_at(container, "image").unwrap_or_default();
                if !is_strata_image(image) {
                    continue;
                }
                let origin = format!(
                    "{} {kind}/{name} container {}",
                    relative(path),
                    str_at(container, "name").unwrap_or("?")
                );
                let mut args = Vec::new();
                if let Some(command) = container.get("command") {
                    let command = words(command);
                    assert_runs_strata(&origin, &command);
                    args.extend(command.into_iter().skip(1));
                }
                match container.get("args") {
                    Some(extra) => args.extend(words(extra)),
                    None if container.get("command").is_none() => {
                        args.clone_from(&self.image.cmd);
                    }
                    None => {}
                }
                let (mut env, env_names) = self.kubernetes_env(&origin, container);
                let service_links = pod_spec["enableServiceLinks"].as_bool().unwrap_or(true);
                for (name, value) in self.kubelet_links(service_links) {
                    env.entry(name).or_insert(value);
                }
                let declared_ports: BTreeMap<String, u16> = sequence(&container["ports"])
                    .iter()
                    .flat_map(|port| {
                        let number = port["containerPort"].as_u64().expect("containerPort");
                        let number = u16::try_from(number).expect("a port number");
                        let mut names = vec![(number.to_string(), number)];
                        if let Some(name) = str_at(port, "name") {
                            names.push((name.to_owned(), number));
                        }
                        names
                    })
                    .collect();
                let resolve_port = |port: &Value, what: &str| -> u16 {
                    match port {
                        Value::Number(n) => u16::try_from(n.as_u64().expect("a port number"))
                            .expect("a port number"),
                        Value::String(name) => *declared_ports.get(name).unwrap_or_else(|| {
                            panic!("{origin}: {what} names port {name:?}, which the container does not declare")
                        }),
                        other => panic!("{origin}: {what}: bad port {other:?}"),
                    }
                };
                let mut probes = Vec::new();
                for (field, kind) in [
                    ("startupProbe", ProbeKind::Startup),
                    ("readinessProbe", ProbeKind::Readiness),
                    ("livenessProbe", ProbeKind::Liveness),
                ] {
                    let probe = &container[field];
                    if probe.is_null() {
                        continue;
                    }
                    let http = &probe["httpGet"];
                    assert!(
                        !http.is_null(),
                        "{origin}: {field} is not httpGet; this test cannot check it"
                    );
                    probes.push(Probe {
                        kind,
                        path: str_at(http, "path").unwrap_or("/").to_owned(),
                        port: resolve_port(&http["port"], field),
                    });
                }
                if annotations.get("prometheus.io/scrape").map(String::as_str) == Some("true") {
                    let port = annotations
                        .get("prometheus.io/port")
                        .unwrap_or_else(|| panic!("{origin}: prometheus.io/port is missing"));
                    probes.push(Probe {
                        kind: ProbeKind::Scrape,
                        path: annotations
                            .get("prometheus.io/path")
                            .cloned()
                            .unwrap_or_else(|| "/metrics".to_owned()),
                        port: resolve_port(
                            &Value::Number(port.parse::<u64>().expect("a port number").into()),
                            "prometheus.io/port",
                        ),
                    });
                }
                let mut container_commands = Vec::new();
                let pre_stop = &container["lifecycle"]["preStop"];
                let pre_stop_sleep_secs = if pre_stop.is_null() {
                    0
                } else if let Some(seconds) = pre_stop["sleep"]["seconds"].as_u64() {
                    seconds
                } else {
                    let command = words(&pre_stop["exec"]["command"]);
                    container_commands.push(command.clone());
                    let at = command
                        .iter()
                        .position(|word| word.rsplit('/').next() == Some("sleep"))
                        .unwrap_or_else(|| {
                            panic!("{origin}: preStop {command:?} is not a sleep; this test cannot check it")
                        });
                    command
                        .get(at + 1)
                        .and_then(|secs| secs.parse().ok())
                        .unwrap_or_else(|| panic!("{origin}: preStop sleeps how long? {command:?}"))
                };
                processes.push(Process {
                    origin,
                    source: Source::Kubernetes {
                        kind: kind.to_owned(),
                        name: name.clone(),
                        pod_labels: pod_labels.clone(),
                        pod_spec: pod_spec.clone(),
                        container: container.clone(),
                    },
                    args,
                    env,
                    env_names,
                    probes,
                    declared_ports,
                    stop_window_secs,
                    pre_stop_sleep_secs,
                    container_commands,
                });
            }
        }
        processes
    }

    /// The environment of a Kubernetes container: the image's, then envFrom in order, then env.
    fn kubernetes_env(
        &self,
        origin: &str,
        container: &Value,
    ) -> (BTreeMap<String, String>, BTreeSet<String>) {
        let mut env = self.image.env.clone();
        let mut names = BTreeSet::new();
        for source in sequence(&container["envFrom"]) {
            let prefix = str_at(source, "prefix").unwrap_or_default();
            let data = if let Some(name) = str_at(&source["configMapRef"], "name") {
                self.config_map_data(origin, name)
            } else if let Some(name) = str_at(&source["secretRef"], "name") {
                self.secret_data(origin, name)
            } else {
                panic!("{origin}: envFrom {source:?} is neither configMapRef nor secretRef")
            };
            for (key, value) in data {
                names.insert(format!("{prefix}{key}"));
                env.insert(format!("{prefix}{key}"), value);
            }
        }
        for variable in sequence(&container["env"]) {
            let name = str_at(variable, "name").expect("env entries have a name");
            names.insert(name.to_owned());
            let value = if let Some(value) = variable.get("value") {
                scalar(value).unwrap_or_default()
            } else if let Some(reference) = variable["valueFrom"].get("secretKeyRef") {
                let secret = str_at(reference, "name").expect("secretKeyRef.name");
                let key = str_at(reference, "key").expect("secretKeyRef.key");
                self.secret_data(origin, secret)
                    .remove(key)
                    .unwrap_or_else(|| panic!("{origin}: Secret {secret} has no key {key}"))
            } else if let Some(reference) = variable["valueFrom"].get("configMapKeyRef") {
                let map = str_at(reference, "name").expect("configMapKeyRef.name");
                let key = str_at(reference, "key").expect("configMapKeyRef.key");
                self.config_map_data(origin, map)
                    .remove(key)
                    .unwrap_or_else(|| panic!("{origin}: ConfigMap {map} has no key {key}"))
            } else {
                panic!("{origin}: env {name} has a value this test cannot know: {variable:?}")
            };
            env.insert(name.to_owned(), value);
        }
        (env, names)
    }

    /// What the kubelet adds to every container's environment: the links of the API server's
    /// Service always, those of every Service of the namespace (the ones under deploy/k8s; the
    /// namespace may hold more) unless the pod sets `enableServiceLinks: false`. A variable the
    /// container sets itself wins over a link, as in the kubelet.
    fn kubelet_links(&self, service_links: bool) -> BTreeMap<String, String> {
        let https = ServicePort {
            name: Some("https".into()),
            port: 443,
            protocol: "TCP".into(),
        };
        let mut links = service_link_variables("kubernetes", "10.96.0.1", &[https]);
        if !service_links {
            return links;
        }
        for (index, (_, service)) in self.objects_of("Service").enumerate() {
            let spec = &service["spec"];
            // Headless and ExternalName Services have no cluster IP, hence no links.
            if str_at(spec, "clusterIP") == Some("None")
                || str_at(spec, "type") == Some("ExternalName")
            {
                continue;
            }
            let name = str_at(&service["metadata"], "name").expect("a Service has a name");
            let cluster_ip = str_at(spec, "clusterIP")
                .map_or_else(|| format!("10.96.1.{}", index + 10), str::to_owned);
            let ports: Vec<ServicePort> = sequence(&spec["ports"])
                .iter()
                .map(|port| ServicePort {
                    name: str_at(port, "name").map(str::to_owned),
                    port: u16::try_from(port["port"].as_u64().expect("a Service port"))
                        .expect("a port number"),
                    protocol: str_at(port, "protocol").unwrap_or("TCP").to_owned(),
                })
                .collect();
            links.extend(service_link_variables(name, &cluster_ip, &ports));
        }
        links
    }

    fn config_map_data(&self, origin: &str, name: &str) -> BTreeMap<String, String> {
        let map = self
            .object("ConfigMap", name)
            .unwrap_or_else(|| panic!("{origin}: ConfigMap {name} is not defined under deploy/"));
        labels(&map["data"])
    }

    fn secret_data(&self, origin: &str, name: &str) -> BTreeMap<String, String> {
        let secret = self
            .object("Secret", name)
            .unwrap_or_else(|| panic!("{origin}: Secret {name} is not defined under deploy/"));
        let mut data: BTreeMap<String, String> = labels(&secret["data"])
            .into_iter()
            .map(|(key, encoded)| {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(encoded.as_bytes())
                    .unwrap_or_else(|_| panic!("Secret {name}: {key} is not base64"));
                (key, String::from_utf8(decoded).expect("UTF-8 secret"))
            })
            .collect();
        data.extend(labels(&secret["stringData"]));
        data
    }

    fn processes_running(&self, subcommand: &str) -> impl Iterator<Item = &Process> {
        self.processes
            .iter()
            .filter(move |process| process.subcommand() == subcommand)
    }

    /// Processes of Kubernetes workloads whose pods a label selector picks.
    fn selected(&self, selector: &Value) -> Vec<&Process> {
        self.processes
            .iter()
            .filter(|process| match &process.source {
                Source::Kubernetes { pod_labels, .. } => selects(selector, pod_labels),
                Source::Compose { .. } => false,
            })
            .collect()
    }
}

/// `image: strata:tag` or `registry/strata:tag`.
/// One port of a Service.
struct ServicePort {
    name: Option<String>,
    port: u16,
    protocol: String,
}

/// A Service name as the kubelet spells it in variable names.
fn link_name(name: &str) -> String {
    name.to_ascii_uppercase().replace('-', "_")
}

/// The Docker-link variables the kubelet gives a pod for one Service, built as `FromServices` in
/// kubernetes/pkg/kubelet/envvars builds them.
fn service_link_variables(
    service: &str,
    cluster_ip: &str,
    ports: &[ServicePort],
) -> BTreeMap<String, String> {
    let prefix = link_name(service);
    let host_port = |port: u16| match cluster_ip.parse::<IpAddr>() {
        Ok(IpAddr::V6(_)) => format!("[{cluster_ip}]:{port}"),
        _ => format!("{cluster_ip}:{port}"),
    };
    let mut variables = BTreeMap::from([(format!("{prefix}_SERVICE_HOST"), cluster_ip.to_owned())]);
    let Some(first) = ports.first() else {
        return variables;
    };
    variables.insert(format!("{prefix}_SERVICE_PORT"), first.port.to_string());
    for port in ports {
        if let Some(name) = &port.name {
            variables.insert(
                format!("{prefix}_SERVICE_PORT_{}", link_name(name)),
                port.port.to_string(),
            );
        }
    }
    for (index, port) in ports.iter().enumerate() {
        let protocol = port.protocol.to_ascii_lowercase();
        let link = format!("{protocol}://{}", host_port(port.port));
        if index == 0 {
            variables.insert(format!("{prefix}_PORT"), link.clone());
        }
        let port_prefix = format!(
            "{prefix}_PORT_{}_{}",
            port.port,
            port.protocol.to_ascii_uppercase()
        );
        variables.insert(format!("{port_prefix}_PROTO"), protocol);
        variables.insert(format!("{port_prefix}_PORT"), port.port.to_string());
        variables.insert(format!("{port_prefix}_ADDR"), cluster_ip.to_owned());
        variables.insert(port_prefix, link);
    }
    variables
}

fn is_strata_image(image: &str) -> bool {
    let repository = image.split('@').next().unwrap_or(image);
    let name = repository.rsplit('/').next().unwrap_or(repository);
    name.split(':').next() == Some("strata")
}

fn assert_runs_strata(origin: &str, command: &[String]) {
    assert!(
        command
            .first()
            .is_some_and(|program| program.rsplit('/').next() == Some("strata")),
        "{origin}: the command {command:?} does not run the strata binary"
    );
}

/// A mapping of scalars (labels, annotations, ConfigMap data).
fn labels(value: &Value) -> BTreeMap<String, String> {
    value
        .as_mapping()
        .map(|mapping| {
            mapping
                .iter()
                .map(|(key, value)| {
                    (
                        scalar(key).expect("a scalar key"),
                        scalar(value).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A Kubernetes label selector (`matchLabels`, `matchExpressions` with In/NotIn/Exists).
fn selects(selector: &Value, pod_labels: &BTreeMap<String, String>) -> bool {
    let labels_match = labels(&selector["matchLabels"])
        .iter()
        .all(|(key, value)| pod_labels.get(key) == Some(value));
    let expressions_match = sequence(&selector["matchExpressions"]).iter().all(|rule| {
        let key = str_at(rule, "key").unwrap_or_default();
        let values: Vec<String> = sequence(&rule["values"])
            .iter()
            .filter_map(scalar)
            .collect();
        match str_at(rule, "operator") {
            Some("In") => pod_labels.get(key).is_some_and(|v| values.contains(v)),
            Some("NotIn") => pod_labels.get(key).is_none_or(|v| !values.contains(v)),
            Some("Exists") => pod_labels.contains_key(key),
            Some("DoesNotExist") => !pod_labels.contains_key(key),
            other => panic!("unknown selector operator {other:?}"),
        }
    });
    labels_match && expressions_match
}

/// A compose duration: `45s`, `1m30s`, `2m`, `1h`.
fn duration_secs(raw: &str, origin: &str) -> u64 {
    let mut total = 0;
    let mut number = String::new();
    for c in raw.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let value: u64 = number
            .parse()
            .unwrap_or_else(|_| panic!("{origin}: bad duration {raw:?}"));
        number.clear();
        total += match c {
            's' => value,
            'm' => value * 60,
            'h' => value * 3600,
            _ => panic!("{origin}: bad duration {raw:?}"),
        };
    }
    assert!(number.is_empty(), "{origin}: duration {raw:?} lacks a unit");
    total
}

// ---------------------------------------------------------------------------------------------
// .env.example and compose interpolation
// ---------------------------------------------------------------------------------------------

fn dotenv(path: &Path) -> BTreeMap<String, String> {
    read(path)
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (name, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("{}: not NAME=value: {line}", relative(path)));
            (
                name.trim().to_owned(),
                value.trim().trim_matches('"').to_owned(),
            )
        })
        .collect()
}

/// Compose's `${NAME}`, `${NAME:-default}`, `${NAME-default}`, `${NAME:?error}`, `${NAME?error}`,
/// `$NAME` and `$$`, with the values of `.env.example`. A required variable missing from it fails.
fn interpolate(raw: &str, variables: &BTreeMap<String, String>, origin: &str) -> String {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::new();
    let mut rest = raw;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(braced) = after.strip_prefix('{') {
            let end = braced
                .find('}')
                .unwrap_or_else(|| panic!("{origin}: unclosed ${{ in {raw:?}"));
            let body = &braced[..end];
            let name_end = body.find(|c| !is_name(c)).unwrap_or(body.len());
            let (name, operator) = body.split_at(name_end);
            let value = variables.get(name);
            let missing = || {
                panic!("{origin}: ${{{name}}} is required but deploy/.env.example does not set it")
            };
            let resolved =
                if operator.is_empty() || operator.starts_with(":?") || operator.starts_with('?') {
                    value.cloned().unwrap_or_else(missing)
                } else if let Some(default) = operator.strip_prefix(":-") {
                    value
                        .filter(|v| !v.is_empty())
                        .cloned()
                        .unwrap_or_else(|| default.to_owned())
                } else if let Some(default) = operator.strip_prefix('-') {
                    value.cloned().unwrap_or_else(|| default.to_owned())
                } else {
                    panic!("{origin}: unsupported interpolation ${{{body}}}")
                };
            out.push_str(&resolved);
            rest = &braced[end + 1..];
        } else {
            let end = after.find(|c| !is_name(c)).unwrap_or(after.len());
            let name = &after[..end];
            out.push_str(variables.get(name).unwrap_or_else(|| {
                panic!("{origin}: ${name} is used but deploy/.env.example does not set it")
            }));
            rest = &after[end..];
        }
    }
    out.push_str(rest);
    out
}

fn interpolate_tree(value: &Value, variables: &BTreeMap<String, String>, path: &Path) -> Value {
    match value {
        Value::String(s) => Value::String(interpolate(s, variables, &relative(path))),
        Value::Sequence(items) => Value::Sequence(
            items
                .iter()
                .map(|item| interpolate_tree(item, variables, path))
                .collect(),
        ),
        Value::Mapping(mapping) => Value::Mapping(
            mapping
                .iter()
                .map(|(key, item)| (key.clone(), interpolate_tree(item, variables, path)))
                .collect(),
        ),
        other => other.clone(),
    }
}

// ---------------------------------------------------------------------------------------------
// Settings, as the binary loads them
// ---------------------------------------------------------------------------------------------

/// Loads `env` as `strata` does at start-up: `Settings::from_env` is `Env::prefixed("STRATA_")`
/// (minus `STRATA_DATABASE_URL` / `STRATA_REDIS_URL`) plus the raw `DATABASE_URL` and
/// `REDIS_URL`, each value parsed the way figment's `Env` parses it, extracted by
/// `Settings::from_figment` (which refuses unknown names and validates). Built from a map rather
/// than the process environment, so tests need not mutate the environment other threads read.
fn load_settings(env: &BTreeMap<String, String>) -> Result<Settings, ConfigError> {
    load_settings_reporting_unknown(env).map(|(settings, _)| settings)
}

/// [`load_settings`], also returning the `STRATA_*` variables that `strata` would warn about.
fn load_settings_reporting_unknown(
    env: &BTreeMap<String, String>,
) -> Result<(Settings, Vec<UnknownVariable>), ConfigError> {
    let mut figment = Figment::new();
    for (name, raw) in env {
        let key = match name.as_str() {
            "DATABASE_URL" | "REDIS_URL" => name.to_ascii_lowercase(),
            _ => match name.get(..7) {
                Some(prefix) if prefix.eq_ignore_ascii_case("STRATA_") => {
                    let key = name[7..].trim().to_ascii_lowercase();
                    if key.is_empty() || key == "database_url" || key == "redis_url" {
                        continue;
                    }
                    key
                }
                _ => continue,
            },
        };
        let value: figment::value::Value = without_placeholders(raw)
            .parse()
            .expect("parsing a value is infallible");
        figment = figment.merge((key, value));
    }
    Settings::from_figment_reporting_unknown(figment)
}

/// [`load_settings`], also refusing the `STRATA_*` names that `strata` ignores with a warning:
/// the manifests must set none.
fn load_settings_strictly(env: &BTreeMap<String, String>) -> Result<Settings, ConfigError> {
    let (settings, unknown) = load_settings_reporting_unknown(env)?;
    match unknown.first() {
        Some(unknown) => Err(ConfigError {
            variable: unknown.variable.clone(),
            message: unknown.to_string(),
        }),
        None => Ok(settings),
    }
}

/// `raw` with each placeholder the manifests ship swapped for a random key: production refuses
/// them by design (`api::adversarial::secrets`), and the rest of the environment is checked as an
/// operator runs it, with real secrets in their place.
fn without_placeholders(raw: &str) -> String {
    const STAND_IN: &str = "2851ef06c389735ed211df5ff37ed50476e8fa80f2d1e59f4365b518e040c5c0";
    let mut placeholders = strata_server::secrets::PLACEHOLDERS.to_vec();
    // Longest first: a short placeholder is part of the longer ones.
    placeholders.sort_by_key(|placeholder| std::cmp::Reverse(placeholder.len()));
    placeholders
        .into_iter()
        .fold(raw.to_owned(), |value, placeholder| {
            value.replace(placeholder, STAND_IN)
        })
}

/// A name Strata reads: its own settings (checked by loading), the two URLs, and the
/// OpenTelemetry SDK's variables read by the tracing setup.
fn is_strata_variable(name: &str) -> bool {
    name.starts_with("STRATA_")
        || name == "DATABASE_URL"
        || name == "REDIS_URL"
        || name.starts_with("OTEL_")
}

/// Whether a STRATA_* name is a setting that accepts the manifest's value: loaded on its own,
/// no error names it. (An error naming another variable, such as production without the JWT
/// secret, is about the combination, which the whole-environment load checks.)
fn refused_setting(name: &str, value: &str) -> Option<String> {
    let env = BTreeMap::from([(name.to_owned(), value.to_owned())]);
    match load_settings_strictly(&env) {
        Err(error) if error.variable == name => Some(error.to_string()),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// The checks
// ---------------------------------------------------------------------------------------------

#[test]
fn every_yaml_file_under_deploy_is_parsed_and_runs_strata() {
    let deploy = Deploy::load();
    assert!(deploy.compose.is_some(), "deploy/compose.yaml is missing");
    for kind in [
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Job",
        "NetworkPolicy",
    ] {
        assert!(
            deploy.objects_of(kind).next().is_some(),
            "deploy/k8s has no {kind}"
        );
    }
    for subcommand in ["serve", "worker", "migrate"] {
        let origins: BTreeSet<bool> = deploy
            .processes_running(subcommand)
            .map(|process| matches!(process.source, Source::Compose { .. }))
            .collect();
        assert_eq!(
            origins,
            BTreeSet::from([false, true]),
            "`strata {subcommand}` must run both in compose and in Kubernetes"
        );
    }
    let compose_apis = deploy
        .processes_running("serve")
        .filter(|process| matches!(process.source, Source::Compose { .. }))
        .count();
    assert!(
        compose_apis >= 2,
        "compose runs {compose_apis} API replica(s)"
    );
}

#[test]
fn every_variable_the_manifests_set_is_one_strata_reads_and_accepts() {
    let deploy = Deploy::load();
    let mut problems = Vec::new();

    // Names, wherever they are set: container env, ConfigMap data, Secret data, the image, and
    // .env.example (whose STRATA_* names must be settings too, should anyone use it as env_file).
    let mut named: Vec<(String, String, String)> = Vec::new();
    for process in &deploy.processes {
        for name in &process.env_names {
            let value = process.env.get(name).cloned().unwrap_or_default();
            named.push((process.origin.clone(), name.clone(), value));
        }
    }
    for kind in ["ConfigMap", "Secret"] {
        for (path, object) in deploy.objects_of(kind) {
            let origin = format!(
                "{} {kind}/{}",
                relative(path),
                str_at(&object["metadata"], "name").unwrap_or("?")
            );
            let mut data = labels(&object["data"]);
            data.extend(labels(&object["stringData"]));
            for (name, value) in data {
                named.push((origin.clone(), name, value));
            }
        }
    }
    for (name, value) in &deploy.image.env {
        named.push(("deploy/Dockerfile ENV".into(), name.clone(), value.clone()));
    }
    for (name, value) in &deploy.dotenv {
        if name.starts_with("STRATA_") {
            named.push(("deploy/.env.example".into(), name.clone(), value.clone()));
        }
    }
    for (origin, name, value) in &named {
        if !is_strata_variable(name) {
            problems.push(format!("{origin}: {name} is not a variable Strata reads"));
        } else if name.starts_with("STRATA_")
            && let Some(error) = refused_setting(name, value)
        {
            problems.push(format!("{origin}: {error}"));
        }
    }

    // Kubernetes takes only strings there: `STRATA_PORT: 8080` unquoted is refused at apply.
    for kind in ["ConfigMap", "Secret"] {
        for (path, object) in deploy.objects_of(kind) {
            for field in ["data", "stringData"] {
                for (key, value) in object[field].as_mapping().into_iter().flatten() {
                    if !value.is_string() {
                        problems.push(format!(
                            "{} {kind} {field}.{}: {value:?} must be quoted",
                            relative(path),
                            scalar(key).unwrap_or_default()
                        ));
                    }
                }
            }
        }
    }
    for process in &deploy.processes {
        if let Source::Kubernetes { container, .. } = &process.source {
            for variable in sequence(&container["env"]) {
                if variable
                    .get("value")
                    .is_some_and(|value| !value.is_string())
                {
                    problems.push(format!(
                        "{}: env {:?} must be a quoted string",
                        process.origin, variable["name"]
                    ));
                }
            }
        }
    }

    // Each process's whole environment, as the binary loads it at start-up.
    for process in &deploy.processes {
        if let Err(error) = load_settings_strictly(&process.env) {
            problems.push(format!("{}: {error}", process.origin));
        }
    }
    assert_no_problems("variables Strata would refuse", &problems);
}

#[test]
fn every_pod_template_turns_service_links_off() {
    let deploy = Deploy::load();
    let mut problems = Vec::new();
    for process in &deploy.processes {
        if let Source::Kubernetes { pod_spec, .. } = &process.source
            && pod_spec["enableServiceLinks"].as_bool() != Some(false)
        {
            problems.push(format!(
                "{}: enableServiceLinks is not false: every Service of the namespace would add \
                 its <NAME>_PORT... variables to the environment",
                process.origin
            ));
        }
    }
    assert_no_problems("pods given service links", &problems);
}

#[test]
fn every_kubernetes_process_starts_even_with_every_services_links() {
    let deploy = Deploy::load();
    // Turned off in our pod templates, but an overlay or another tool may turn them back on.
    let links = deploy.kubelet_links(true);
    for variable in [
        "STRATA_API_SERVICE_HOST",
        "STRATA_API_SERVICE_PORT_HTTP",
        "STRATA_API_PORT",
        "STRATA_API_PORT_80_TCP_ADDR",
    ] {
        assert!(links.contains_key(variable), "{variable} in {links:?}");
    }
    let mut problems = Vec::new();
    let mut checked = 0;
    for process in &deploy.processes {
        if !matches!(process.source, Source::Kubernetes { .. }) {
            continue;
        }
        checked += 1;
        let mut linked = process.env.clone();
        for (name, value) in &links {
            linked.entry(name.clone()).or_insert_with(|| value.clone());
        }
        match (
            load_settings_strictly(&process.env),
            load_settings_reporting_unknown(&linked),
        ) {
            (_, Err(error)) => problems.push(format!("{}: {error}", process.origin)),
            (_, Ok((_, unknown))) if !unknown.is_empty() => problems.push(format!(
                "{}: service links reported as unknown settings: {unknown:?}",
                process.origin
            )),
            (Ok(without), Ok((with, _))) => {
                let read = |settings: &Settings| {
                    (
                        settings.http.host.clone(),
                        settings.http.port,
                        settings.telemetry.metrics_port,
                        settings.worker.metrics_port,
                    )
                };
                if read(&without) != read(&with) {
                    problems.push(format!(
                        "{}: service links changed a setting",
                        process.origin
                    ));
                }
            }
            (Err(error), Ok(_)) => problems.push(format!("{}: {error}", process.origin)),
        }
    }
    assert!(checked >= 3, "only {checked} Kubernetes processes");
    assert_no_problems("processes refusing the kubelet's environment", &problems);
}

/// An environment as the kubelet builds it in a namespace holding PostgreSQL, Redis and Services
/// whose names start with `strata` (one with the app's own name, one on IPv6), written out by
/// hand rather than derived by this file's own code.
fn hand_written_kubelet_env() -> BTreeMap<String, String> {
    [
        ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
        ("KUBERNETES_SERVICE_PORT", "443"),
        ("KUBERNETES_SERVICE_PORT_HTTPS", "443"),
        ("KUBERNETES_PORT", "tcp://10.96.0.1:443"),
        ("KUBERNETES_PORT_443_TCP", "tcp://10.96.0.1:443"),
        ("KUBERNETES_PORT_443_TCP_PROTO", "tcp"),
        ("KUBERNETES_PORT_443_TCP_PORT", "443"),
        ("KUBERNETES_PORT_443_TCP_ADDR", "10.96.0.1"),
        ("POSTGRES_SERVICE_HOST", "10.96.3.7"),
        ("POSTGRES_SERVICE_PORT", "5432"),
        ("POSTGRES_PORT", "tcp://10.96.3.7:5432"),
        ("POSTGRES_PORT_5432_TCP", "tcp://10.96.3.7:5432"),
        ("POSTGRES_PORT_5432_TCP_PROTO", "tcp"),
        ("POSTGRES_PORT_5432_TCP_PORT", "5432"),
        ("POSTGRES_PORT_5432_TCP_ADDR", "10.96.3.7"),
        ("REDIS_SERVICE_HOST", "10.96.3.8"),
        ("REDIS_SERVICE_PORT", "6379"),
        ("REDIS_PORT", "tcp://10.96.3.8:6379"),
        ("STRATA_API_SERVICE_HOST", "10.96.1.10"),
        ("STRATA_API_SERVICE_PORT", "80"),
        ("STRATA_API_SERVICE_PORT_HTTP", "80"),
        ("STRATA_API_PORT", "tcp://10.96.1.10:80"),
        ("STRATA_API_PORT_80_TCP", "tcp://10.96.1.10:80"),
        ("STRATA_API_PORT_80_TCP_PROTO", "tcp"),
        ("STRATA_API_PORT_80_TCP_PORT", "80"),
        ("STRATA_API_PORT_80_TCP_ADDR", "10.96.1.10"),
        ("STRATA_WORKER_SERVICE_HOST", "10.96.1.11"),
        ("STRATA_WORKER_SERVICE_PORT", "9091"),
        ("STRATA_WORKER_SERVICE_PORT_METRICS", "9091"),
        ("STRATA_WORKER_PORT", "tcp://10.96.1.11:9091"),
        ("STRATA_WORKER_PORT_9091_TCP", "tcp://10.96.1.11:9091"),
        ("STRATA_WORKER_PORT_9091_TCP_PROTO", "tcp"),
        ("STRATA_WORKER_PORT_9091_TCP_PORT", "9091"),
        ("STRATA_WORKER_PORT_9091_TCP_ADDR", "10.96.1.11"),
        // A Service named `strata` links STRATA_PORT itself, to an address, not a port number.
        ("STRATA_SERVICE_HOST", "fd00:10:96::5"),
        ("STRATA_SERVICE_PORT", "80"),
        ("STRATA_SERVICE_PORT_WEB", "80"),
        ("STRATA_SERVICE_PORT_SYSLOG", "514"),
        ("STRATA_PORT", "tcp://[fd00:10:96::5]:80"),
        ("STRATA_PORT_80_TCP", "tcp://[fd00:10:96::5]:80"),
        ("STRATA_PORT_80_TCP_PROTO", "tcp"),
        ("STRATA_PORT_80_TCP_PORT", "80"),
        ("STRATA_PORT_80_TCP_ADDR", "fd00:10:96::5"),
        ("STRATA_PORT_514_UDP", "udp://[fd00:10:96::5]:514"),
        ("STRATA_PORT_514_UDP_PROTO", "udp"),
        ("STRATA_PORT_514_UDP_PORT", "514"),
        ("STRATA_PORT_514_UDP_ADDR", "fd00:10:96::5"),
        ("STRATA_LOG_FORMAT", "json"),
        ("STRATA_LOG", "info"),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .collect()
}

#[test]
fn a_hand_written_kubelet_environment_loads_without_a_warning() {
    let (settings, unknown) =
        load_settings_reporting_unknown(&hand_written_kubelet_env()).expect("strata starts");
    assert!(unknown.is_empty(), "{unknown:?}");
    assert_eq!(
        (settings.http.port, settings.telemetry.metrics_port),
        (8080, 9464)
    );
}

#[test]
fn the_binary_starts_past_its_configuration_in_a_kubelet_built_environment() {
    // Nothing listens there: `strata migrate` gets past its configuration, then fails to connect.
    let database_url = format!("postgres://strata@127.0.0.1:{}/strata", free_port());
    let run = |extra: &[(&str, &str)]| {
        let output = Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("migrate")
            .env_clear()
            .envs(hand_written_kubelet_env())
            .env("STRATA_ENV", "test")
            .env("DATABASE_URL", &database_url)
            .envs(extra.iter().copied())
            .output()
            .expect("strata runs");
        (
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };

    let (stdout, stderr) = run(&[("STRATA_RELEASE_CHANNEL", "stable")]);
    assert!(!stderr.contains("invalid configuration"), "{stderr}");
    assert!(stderr.contains("migrating the database"), "{stderr}");
    assert!(
        stdout
            .lines()
            .any(|line| line.contains("\"WARN\"") && line.contains("STRATA_RELEASE_CHANNEL")),
        "{stdout}"
    );
    assert!(!stdout.contains("STRATA_API_PORT"), "{stdout}");

    let (_, stderr) = run(&[("STRATA_JWT_SECERT", "a-misspelt-setting")]);
    assert!(
        stderr.contains("invalid configuration: STRATA_JWT_SECERT")
            && stderr.contains("STRATA_JWT_SECRET?"),
        "{stderr}"
    );
}

#[test]
fn probes_target_the_port_each_process_listens_on_with_the_right_path() {
    let deploy = Deploy::load();
    let mut problems = Vec::new();
    for process in &deploy.processes {
        let origin = &process.origin;
        let settings = process.settings();
        let listening = process.listening_port();
        match (process.subcommand(), listening) {
            ("worker", None) => problems.push(format!(
                "{origin}: the worker serves no probes: set STRATA_WORKER_METRICS_PORT"
            )),
            ("migrate", _) if !process.probes.is_empty() => problems.push(format!(
                "{origin}: strata migrate exits when done; it has nothing to probe"
            )),
            _ => {}
        }
        let reachable = |host: &str| matches!(host, "0.0.0.0" | "::" | "[::]");
        if listening.is_some() && !reachable(&settings.http.host) {
            problems.push(format!(
                "{origin}: STRATA_HOST={} is unreachable from outside the container",
                settings.http.host
            ));
        }
        if process.subcommand() == "serve" && !reachable(&settings.telemetry.metrics_host) {
            problems.push(format!(
                "{origin}: metrics on {}, unreachable from outside the container \
                 (STRATA_METRICS_HOST, default STRATA_HOST)",
                settings.telemetry.metrics_host
            ));
        }
        for port in process.serving_ports() {
            if !process
                .declared_ports
                .values()
                .any(|declared| *declared == port)
            {
                problems.push(format!(
                    "{origin}: listens on {port} but declares only ports {:?}",
                    process.declared_ports.values().collect::<BTreeSet<_>>()
                ));
            }
        }
        let metrics = process.metrics_port();
        if process.subcommand() == "serve" && metrics == listening {
            problems.push(format!(
                "{origin}: /metrics would share the API's port {listening:?}"
            ));
        }
        for probe in &process.probes {
            // The scrape goes to the metrics listener, every other probe to the API's port.
            let (expected_port, setting) = match (process.subcommand(), probe.kind) {
                ("serve", ProbeKind::Scrape) => (metrics, "STRATA_METRICS_PORT"),
                ("serve", _) => (listening, "STRATA_PORT"),
                _ => (listening, "STRATA_WORKER_METRICS_PORT"),
            };
            if Some(probe.port) != expected_port {
                problems.push(format!(
                    "{origin}: {:?} probe on port {}, but {setting} is {expected_port:?}",
                    probe.kind, probe.port
                ));
            }
            let expected = match (process.subcommand(), probe.kind) {
                // Liveness must not fail while a dependency is down: a restart would not help.
                (_, ProbeKind::Liveness) => Some("/health/live"),
                ("serve", ProbeKind::Startup | ProbeKind::Readiness | ProbeKind::Healthcheck) => {
                    Some("/health/ready")
                }
                ("worker", ProbeKind::Healthcheck) => Some("/health/live"),
                (_, ProbeKind::Scrape) => Some("/metrics"),
                _ => None,
            };
            if expected != Some(probe.path.as_str()) {
                problems.push(format!(
                    "{origin}: {:?} probe uses {}, expected {expected:?}",
                    probe.kind, probe.path
                ));
            }
        }
        if let Source::Kubernetes { kind, .. } = &process.source
            && process.subcommand() == "serve"
        {
            for kind_needed in [
                ProbeKind::Startup,
                ProbeKind::Readiness,
                ProbeKind::Liveness,
                ProbeKind::Scrape,
            ] {
                if !process.probes.iter().any(|p| p.kind == kind_needed) {
                    problems.push(format!("{origin} ({kind}): no {kind_needed:?} probe"));
                }
            }
        }
        if process.subcommand() == "worker"
            && matches!(process.source, Source::Kubernetes { .. })
            && !process.probes.iter().any(|p| p.kind == ProbeKind::Liveness)
        {
            problems.push(format!("{origin}: the worker has no liveness probe"));
        }
    }
    assert_no_problems("probes that miss", &problems);
}

#[test]
fn the_load_balancer_checks_readiness_on_each_replicas_port_and_its_address_is_trusted() {
    let deploy = Deploy::load();
    let mut problems = Vec::new();
    let config = read(&deploy_dir().join("haproxy.cfg"));
    let lines: Vec<&str> = config
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#'))
        .collect();

    let checks: Vec<&str> = lines
        .iter()
        .filter(|line| line.starts_with("http-check send") || line.starts_with("option httpchk "))
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.iter().position(|w| *w == "uri") {
                Some(at) => words.get(at + 1).copied(),
                None => words.get(3).copied(), // option httpchk METHOD PATH
            }
        })
        .collect();
    assert!(!checks.is_empty(), "haproxy.cfg health-checks nothing");
    for path in &checks {
        if *path != "/health/ready" {
            problems.push(format!("haproxy.cfg checks {path}, not /health/ready"));
        }
    }
    assert!(
        lines.contains(&"option forwardfor"),
        "haproxy.cfg does not pass X-Forwarded-For"
    );

    let apis: BTreeMap<String, &Process> = deploy
        .processes_running("serve")
        .filter_map(|process| match &process.source {
            Source::Compose { service, .. } => Some((service.clone(), process)),
            Source::Kubernetes { .. } => None,
        })
        .collect();
    let mut balanced = BTreeSet::new();
    for line in lines.iter().filter(|line| line.starts_with("server ")) {
        let address = line
            .split_whitespace()
            .nth(2)
            .expect("server NAME HOST:PORT");
        let (host, port) = address.rsplit_once(':').expect("server HOST:PORT");
        let port: u16 = port.parse().expect("a port number");
        match apis.get(host) {
            Some(api) if api.listening_port() == Some(port) => {
                balanced.insert(host.to_owned());
            }
            Some(api) => problems.push(format!(
                "haproxy.cfg sends {host} traffic to port {port}; it listens on {:?}",
                api.listening_port()
            )),
            None => problems.push(format!(
                "haproxy.cfg balances {host}, which is no `strata serve` service"
            )),
        }
    }
    let unbalanced: Vec<&String> = apis.keys().filter(|api| !balanced.contains(*api)).collect();
    if !unbalanced.is_empty() {
        problems.push(format!("haproxy.cfg never routes to {unbalanced:?}"));
    }

    // The proxy's address must be trusted by every replica, or every client looks like the proxy
    // (one rate-limit budget for the whole world).
    let proxies: Vec<(String, IpAddr)> = deploy
        .compose_services()
        .into_iter()
        .filter(|(_, service)| {
            sequence(&service["volumes"])
                .iter()
                .filter_map(Value::as_str)
                .any(|volume| volume.starts_with("./haproxy.cfg:"))
        })
        .flat_map(|(name, service)| {
            service["networks"]
                .as_mapping()
                .map(|networks| {
                    networks
                        .values()
                        .filter_map(|network| str_at(network, "ipv4_address"))
                        .map(|ip| (name.clone(), ip.parse().expect("an IP address")))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
        .collect();
    assert!(
        !proxies.is_empty(),
        "no compose service mounts ./haproxy.cfg with a fixed ipv4_address"
    );
    for (service, api) in &apis {
        let settings = api.settings();
        for (proxy, ip) in &proxies {
            if !settings
                .limits
                .trusted_proxies
                .iter()
                .any(|net| net.contains(*ip))
            {
                problems.push(format!(
                    "{service}: STRATA_TRUSTED_PROXIES does not cover the proxy {proxy} ({ip})"
                ));
            }
        }
    }
    assert_no_problems("load balancing", &problems);
}

#[test]
fn stop_windows_outlast_the_shutdown_sequence() {
    let deploy = Deploy::load();
    let mut problems = Vec::new();
    for process in &deploy.processes {
        let settings = process.settings();
        let grace = settings.http.shutdown_grace.as_secs();
        let drain = settings.http.shutdown_timeout.as_secs();
        let window = process.stop_window_secs;
        let pre_stop = process.pre_stop_sleep_secs;
        let origin = &process.origin;
        match process.subcommand() {
            "serve" => {
                // SIGKILL comes `window` seconds after termination starts, preStop included.
                if window <= pre_stop + grace + drain {
                    problems.push(format!(
                        "{origin}: stop window {window}s <= preStop {pre_stop}s + \
                         STRATA_SHUTDOWN_GRACE_SECS {grace}s + STRATA_SHUTDOWN_TIMEOUT_SECS {drain}s"
                    ));
                }
                if matches!(process.source, Source::Kubernetes { .. }) && pre_stop < grace {
                    problems.push(format!(
                        "{origin}: preStop sleeps {pre_stop}s, less than the {grace}s grace: \
                         endpoints may still route here when the listener closes"
                    ));
                }
            }
            "worker" if window <= pre_stop + drain => problems.push(format!(
                "{origin}: stop window {window}s <= preStop {pre_stop}s + \
                 STRATA_SHUTDOWN_TIMEOUT_SECS {drain}s (the job at hand is killed)"
            )),
            _ => {}
        }
    }
    assert_no_problems("shutdowns cut short", &problems);
}

#[test]
fn every_command_is_a_real_subcommand_of_the_binary() {
    let deploy = Deploy::load();
    let mut commands: Vec<(String, Vec<String>)> = deploy
        .processes
        .iter()
        .map(|process| (process.origin.clone(), process.args.clone()))
        .collect();
    commands.push(("deploy/Dockerfile CMD".into(), deploy.image.cmd.clone()));
    let mut problems = Vec::new();
    for (origin, args) in commands {
        if !matches!(
            args.first().map(String::as_str),
            Some("serve" | "worker" | "migrate")
        ) {
            problems.push(format!(
                "{origin}: {args:?} is not serve, worker or migrate"
            ));
            continue;
        }
        // clap answers --help for a real subcommand (exit 0) and refuses anything else (exit 2).
        let output = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(&args)
            .arg("--help")
            .env_clear()
            .output()
            .expect("strata runs");
        if !output.status.success() {
            problems.push(format!(
                "{origin}: `strata {}` is refused: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
    }
    assert_no_problems("commands the binary does not have", &problems);
}

#[test]
fn the_image_runs_strata_serve_as_an_unprivileged_user_on_the_exposed_port() {
    let deploy = Deploy::load();
    let image = &deploy.image;
    assert_runs_strata("deploy/Dockerfile ENTRYPOINT", &image.entrypoint);
    assert_eq!(image.cmd, ["serve"], "deploy/Dockerfile CMD");
    let settings = load_settings(&image.env).expect("the image's ENV loads");
    assert!(
        matches!(settings.http.host.as_str(), "0.0.0.0" | "::"),
        "the image listens on {}, unreachable through a published port: set ENV STRATA_HOST=0.0.0.0",
        settings.http.host
    );
    assert!(
        image.expose.contains(&settings.http.port),
        "EXPOSE {:?} does not include the port the image listens on ({})",
        image.expose,
        settings.http.port
    );
    assert!(
        image.expose.contains(&settings.telemetry.metrics_port),
        "EXPOSE {:?} does not include the image's metrics port ({})",
        image.expose,
        settings.telemetry.metrics_port
    );
    let user = image.user.as_deref().expect("the image sets USER");
    let uid: u64 = user
        .split(':')
        .next()
        .and_then(|uid| uid.parse().ok())
        .expect("USER is numeric, so that runAsNonRoot can verify it");
    assert_ne!(uid, 0, "the image runs as root");
    assert_eq!(uid, 10001, "the image's user");

    // Kubernetes agrees: non-root, the image's uid, a read-only root filesystem, no escalation.
    let mut problems = Vec::new();
    for process in &deploy.processes {
        let Source::Kubernetes {
            pod_spec,
            container,
            ..
        } = &process.source
        else {
            continue;
        };
        let setting = |field: &str| {
            let own = &container["securityContext"][field];
            if own.is_null() {
                pod_spec["securityContext"][field].clone()
            } else {
                own.clone()
            }
        };
        if setting("runAsNonRoot") != Value::Bool(true) {
            problems.push(format!("{}: runAsNonRoot is not true", process.origin));
        }
        let run_as = setting("runAsUser");
        if !run_as.is_null() && run_as.as_u64() != Some(uid) {
            problems.push(format!(
                "{}: runAsUser {run_as:?} is not the image's {uid}",
                process.origin
            ));
        }
        if container["securityContext"]["readOnlyRootFilesystem"] != Value::Bool(true) {
            problems.push(format!(
                "{}: readOnlyRootFilesystem is not true",
                process.origin
            ));
        }
        if container["securityContext"]["allowPrivilegeEscalation"] != Value::Bool(false) {
            problems.push(format!(
                "{}: allowPrivilegeEscalation is not false",
                process.origin
            ));
        }
        for needed in ["requests", "limits"] {
            if container["resources"][needed].is_null() {
                problems.push(format!("{}: no resources.{needed}", process.origin));
            }
        }
    }

    // The build context has what the Dockerfile copies, and .dockerignore does not drop it.
    let ignored: Vec<String> = read(&repository().join(".dockerignore"))
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| line.trim_end_matches('/').to_owned())
        .collect();
    assert!(
        ignored.iter().any(|pattern| pattern == "target"),
        ".dockerignore must exclude target/ (gigabytes of build output)"
    );
    for source in &image.context_copies {
        let source = source.trim_end_matches('/');
        if !repository().join(source).exists() {
            problems.push(format!(
                "deploy/Dockerfile copies {source}, which does not exist"
            ));
        }
        if ignored
            .iter()
            .any(|pattern| source == pattern || source.starts_with(&format!("{pattern}/")))
        {
            problems.push(format!(
                ".dockerignore drops {source}, which the Dockerfile copies"
            ));
        }
    }
    assert_no_problems("image and security context", &problems);
}

/// The runtime image is distroless: it holds the binary and nothing to run it with, so every
/// command a manifest runs inside a container must be the binary itself, in exec form.
#[test]
fn commands_in_the_container_are_the_binary_the_distroless_image_holds() {
    let deploy = Deploy::load();
    assert!(
        deploy.image.base.starts_with("gcr.io/distroless/"),
        "deploy/Dockerfile's runtime stage is {:?}: the image should hold the binary and no shell",
        deploy.image.base
    );
    let mut problems = Vec::new();
    for process in &deploy.processes {
        for command in &process.container_commands {
            let program = match command.split_first() {
                // Compose's exec form; `CMD-SHELL` (or a plain string) needs /bin/sh.
                Some((form, rest)) if form == "CMD" => rest.first(),
                Some((form, _)) if form == "CMD-SHELL" || form == "NONE" => None,
                _ if matches!(process.source, Source::Compose { .. }) => None,
                Some((program, _)) => Some(program),
                None => None,
            };
            if program.is_none_or(|program| program.rsplit('/').next() != Some("strata")) {
                problems.push(format!(
                    "{}: {command:?} needs a program the image does not have (it holds only \
                     strata: use `strata healthcheck`, or the kubelet's preStop sleep)",
                    process.origin
                ));
            }
        }
    }
    assert_no_problems("commands the image cannot run", &problems);

    // distroless/cc holds glibc and libgcc and no other shared library: a dependency that links
    // one more (OpenSSL, say) would build and then fail to start in the image.
    let ldd = Command::new("ldd")
        .arg(env!("CARGO_BIN_EXE_strata"))
        .output()
        .expect("ldd (Debian's libc-bin) runs");
    assert!(ldd.status.success(), "{ldd:?}");
    let provided = [
        "linux-vdso.so",
        "libc.so",
        "libm.so",
        "libgcc_s.so",
        "libpthread.so",
        "libdl.so",
        "librt.so",
        "ld-linux",
    ];
    let missing: Vec<String> = String::from_utf8_lossy(&ldd.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|library| {
            let name = library.rsplit('/').next().unwrap_or(library);
            !provided.iter().any(|known| name.starts_with(known))
        })
        .map(str::to_owned)
        .collect();
    assert!(
        missing.is_empty(),
        "strata links {missing:?}, which distroless/cc does not have"
    );
}

#[test]
fn kubernetes_objects_point_at_the_right_pods_and_ports() {
    let deploy = Deploy::load();
    let mut problems = Vec::new();

    for (path, service) in deploy.objects_of("Service") {
        let name = str_at(&service["metadata"], "name").unwrap_or("?");
        let origin = format!("{} Service/{name}", relative(path));
        let wrapped = Value::Mapping(
            [(
                Value::from("matchLabels"),
                service["spec"]["selector"].clone(),
            )]
            .into_iter()
            .collect(),
        );
        let selected = deploy.selected(&wrapped);
        if selected.is_empty() {
            problems.push(format!("{origin} selects no Strata pods"));
        }
        for process in selected {
            if process.subcommand() != "serve" {
                problems.push(format!("{origin} selects {}", process.origin));
                continue;
            }
            for port in sequence(&service["spec"]["ports"]) {
                let target = scalar(&port["targetPort"]).expect("targetPort");
                let resolved = process.declared_ports.get(&target).copied();
                if resolved != process.listening_port() {
                    problems.push(format!(
                        "{origin}: targetPort {target} is {resolved:?}, but {} listens on {:?}",
                        process.origin,
                        process.listening_port()
                    ));
                }
            }
        }
    }

    for (path, policy) in deploy.objects_of("NetworkPolicy") {
        let name = str_at(&policy["metadata"], "name").unwrap_or("?");
        let origin = format!("{} NetworkPolicy/{name}", relative(path));
        let selected = deploy.selected(&policy["spec"]["podSelector"]);
        if selected.is_empty() {
            problems.push(format!("{origin} selects no Strata pods"));
        }
        let types = words(&policy["spec"]["policyTypes"]);
        for needed in ["Ingress", "Egress"] {
            if !types.iter().any(|t| t == needed) {
                problems.push(format!("{origin}: policyTypes lacks {needed}"));
            }
        }
        for process in selected {
            let mut allowed = BTreeSet::new();
            for rule in sequence(&policy["spec"]["ingress"]) {
                let ports = sequence(&rule["ports"]);
                if ports.is_empty() {
                    problems.push(format!("{origin}: an ingress rule opens every port"));
                }
                for port in ports {
                    let raw = scalar(&port["port"]).expect("port");
                    match process.declared_ports.get(&raw) {
                        Some(number) => allowed.insert(*number),
                        None => allowed.insert(raw.parse().unwrap_or(0)),
                    };
                }
            }
            let serving = process.serving_ports();
            if allowed != serving {
                problems.push(format!(
                    "{origin}: ingress open on {allowed:?} for {}, which serves {serving:?}",
                    process.origin
                ));
            }
            let egress_ports: BTreeSet<String> = sequence(&policy["spec"]["egress"])
                .iter()
                .flat_map(|rule| sequence(&rule["ports"]).iter().cloned())
                .filter_map(|port| scalar(&port["port"]))
                .collect();
            if !egress_ports.contains("53") {
                problems.push(format!("{origin}: no egress to DNS"));
            }
            let settings = process.settings();
            for (what, url) in [("DATABASE_URL", settings.database.url.expose_secret())]
                .into_iter()
                .chain(
                    (process.subcommand() != "migrate")
                        .then_some(("REDIS_URL", settings.redis.url.expose_secret())),
                )
            {
                let port = url_port(url);
                if !egress_ports.contains(&port.to_string()) {
                    problems.push(format!(
                        "{origin}: {} reaches {what} on port {port}, which egress does not allow",
                        process.origin
                    ));
                }
            }
        }
    }

    for (path, hpa) in deploy.objects_of("HorizontalPodAutoscaler") {
        let origin = format!("{} HorizontalPodAutoscaler", relative(path));
        assert_eq!(
            str_at(hpa, "apiVersion"),
            Some("autoscaling/v2"),
            "{origin}"
        );
        let target = &hpa["spec"]["scaleTargetRef"];
        let kind = str_at(target, "kind").unwrap_or_default();
        let name = str_at(target, "name").unwrap_or_default();
        let scales_api = deploy.processes_running("serve").any(|process| {
            matches!(&process.source, Source::Kubernetes { kind: k, name: n, .. } if k == kind && n == name)
        });
        if !scales_api {
            problems.push(format!("{origin} scales {kind}/{name}, not the API"));
        }
        if hpa["spec"]["minReplicas"].as_u64().unwrap_or(1) < 2 {
            problems.push(format!("{origin}: fewer than 2 replicas leaves no slack"));
        }
    }

    for (path, pdb) in deploy.objects_of("PodDisruptionBudget") {
        let origin = format!("{} PodDisruptionBudget", relative(path));
        let selected = deploy.selected(&pdb["spec"]["selector"]);
        if selected.is_empty() || selected.iter().any(|p| p.subcommand() != "serve") {
            problems.push(format!("{origin} must select exactly the API pods"));
        }
        if pdb["spec"]["minAvailable"].as_u64() != Some(1) {
            problems.push(format!("{origin}: minAvailable is not 1"));
        }
    }

    assert_no_problems("Kubernetes objects", &problems);
}

fn url_port(url: &str) -> u16 {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let authority = rest.split('/').next().unwrap_or(rest);
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    match host_port.rsplit_once(':') {
        Some((_, port)) => port.parse().expect("a port number"),
        None if scheme.starts_with("postgres") => 5432,
        None => 6379,
    }
}

#[test]
fn compose_and_kustomize_accept_the_files_when_the_tools_are_installed() {
    let works = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    let deploy = deploy_dir();
    if works("docker", &["compose", "version"]) {
        let output = Command::new("docker")
            .args(["compose", "--env-file"])
            .arg(deploy.join(".env.example"))
            .arg("-f")
            .arg(deploy.join("compose.yaml"))
            .args(["config", "--quiet"])
            .output()
            .expect("docker compose runs");
        assert!(
            output.status.success(),
            "docker compose config: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    if works("kubectl", &["version", "--client"]) {
        let output = Command::new("kubectl")
            .arg("kustomize")
            .arg(deploy.join("k8s"))
            .output()
            .expect("kubectl runs");
        assert!(
            output.status.success(),
            "kubectl kustomize: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let rendered = String::from_utf8(output.stdout).expect("UTF-8");
        let images: BTreeSet<&str> = rendered
            .lines()
            .filter_map(|line| line.trim().strip_prefix("image: "))
            .collect();
        assert!(
            images.iter().all(|image| is_strata_image(image)),
            "kustomize renders images {images:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Operating it: kustomizations, autoscaling, scraping and alerts
// ---------------------------------------------------------------------------------------------

/// The alert rules as a plain Prometheus rules file: the source the PrometheusRule copies.
fn rules_file() -> PathBuf {
    deploy_dir().join("prometheus").join("strata-rules.yaml")
}

/// The promtool unit tests of [`rules_file`].
fn rules_tests_file() -> PathBuf {
    deploy_dir()
        .join("prometheus")
        .join("strata-rules.test.yaml")
}

/// The `job` label each Strata process is scraped under, by subcommand: the names the alert rules
/// and the dashboard select (crates/server/tests/monitoring.rs holds them to these).
const SCRAPE_JOBS: [(&str, &str); 2] = [("serve", "strata-api"), ("worker", "strata-worker")];

fn single_document(path: &Path) -> Value {
    let mut docs = documents(path);
    assert_eq!(docs.len(), 1, "{} must hold one document", relative(path));
    docs.remove(0)
}

/// Every rule of a rules file's `groups`.
fn rules(rules_file: &Value) -> Vec<&Value> {
    sequence(&rules_file["groups"])
        .iter()
        .flat_map(|group| sequence(&group["rules"]))
        .collect()
}

/// Every alert's name, in file order.
fn alert_names(rules_file: &Value) -> Vec<String> {
    rules(rules_file)
        .into_iter()
        .filter_map(|rule| str_at(rule, "alert"))
        .map(str::to_owned)
        .collect()
}

/// The anchors GitHub gives a Markdown file's headings: lower case, spaces to hyphens, other
/// punctuation dropped.
fn heading_anchors(markdown: &str) -> BTreeSet<String> {
    let mut in_code = false;
    let mut anchors = BTreeSet::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        let Some(title) = line.strip_prefix('#') else {
            continue;
        };
        let title = title.trim_start_matches('#');
        if in_code || !title.starts_with(' ') {
            continue;
        }
        let anchor = title
            .trim()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c.to_ascii_lowercase()),
                _ => None,
            })
            .collect();
        anchors.insert(anchor);
    }
    anchors
}

/// The text of a `## ` section of a Markdown file, up to the next `## ` heading.
fn markdown_section<'a>(markdown: &'a str, heading: &str) -> &'a str {
    let start = markdown
        .find(&format!("\n## {heading}\n"))
        .unwrap_or_else(|| panic!("no `## {heading}` section"));
    let body = &markdown[start + 1..];
    let end = body[3..].find("\n## ").map_or(body.len(), |at| at + 3);
    &body[..end]
}

fn kustomizations() -> Vec<PathBuf> {
    yaml_files(&deploy_dir().join("k8s"))
        .into_iter()
        .filter(|path| {
            path.file_name()
                .is_some_and(|name| name == "kustomization.yaml")
        })
        .collect()
}

fn kubectl_installed() -> bool {
    Command::new("kubectl")
        .args(["version", "--client"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

#[test]
fn each_kustomization_applies_every_manifest_beside_it_but_never_a_secret() {
    let mut problems = Vec::new();
    let kustomizations = kustomizations();
    assert!(
        !kustomizations.is_empty(),
        "deploy/k8s has no kustomization.yaml"
    );
    for kustomization in &kustomizations {
        let origin = relative(kustomization);
        let dir = kustomization.parent().expect("a directory");
        let doc = single_document(kustomization);
        // A generated Secret would be put back at every apply just the same.
        if !doc["secretGenerator"].is_null() {
            problems.push(format!("{origin} generates Secrets"));
        }
        let listed: BTreeSet<String> = sequence(&doc["resources"])
            .iter()
            .filter_map(scalar)
            .collect();
        let mut manifests = BTreeSet::new();
        for path in yaml_files(dir) {
            if path.parent() != Some(dir) || &path == kustomization {
                continue;
            }
            let name = path
                .file_name()
                .expect("a file name")
                .to_string_lossy()
                .into_owned();
            let secrets_only = documents(&path)
                .iter()
                .all(|object| str_at(object, "kind") == Some("Secret"));
            // A file of Secrets is the operator's template, created once by hand.
            if !secrets_only {
                manifests.insert(name);
            }
        }
        for resource in &listed {
            let path = dir.join(resource);
            if path.is_dir() {
                if !path.join("kustomization.yaml").is_file() {
                    problems.push(format!(
                        "{origin} lists {resource}, a directory without a kustomization"
                    ));
                }
                continue;
            }
            if !path.is_file() {
                problems.push(format!("{origin} lists {resource}, which does not exist"));
                continue;
            }
            if documents(&path)
                .iter()
                .any(|object| str_at(object, "kind") == Some("Secret"))
            {
                problems.push(format!(
                    "{origin} applies the Secret in {resource}: every `kubectl apply -k` would put \
                     its placeholders back over the real values"
                ));
            }
        }
        let unlisted: Vec<&String> = manifests.difference(&listed).collect();
        if !unlisted.is_empty() {
            problems.push(format!(
                "{origin} leaves out {unlisted:?}: `kubectl apply -k` misses them"
            ));
        }
        for generator in sequence(&doc["configMapGenerator"]) {
            for file in sequence(&generator["files"]).iter().filter_map(scalar) {
                let source = file
                    .split_once('=')
                    .map_or(file.as_str(), |(_, source)| source);
                if !dir.join(source).is_file() {
                    problems.push(format!(
                        "{origin}: configMapGenerator reads {source}, which does not exist"
                    ));
                }
            }
        }
        if kubectl_installed() {
            let output = Command::new("kubectl")
                .arg("kustomize")
                .arg(dir)
                .output()
                .expect("kubectl runs");
            assert!(
                output.status.success(),
                "kubectl kustomize {}: {}",
                relative(dir),
                String::from_utf8_lossy(&output.stderr)
            );
            let rendered = String::from_utf8(output.stdout).expect("UTF-8");
            for document in serde_yaml_ng::Deserializer::from_str(&rendered) {
                let object = Value::deserialize(document).expect("kustomize renders YAML");
                if str_at(&object, "kind") == Some("Secret") {
                    problems.push(format!(
                        "kubectl kustomize {} renders Secret/{}",
                        relative(dir),
                        str_at(&object["metadata"], "name").unwrap_or("?")
                    ));
                }
            }
        }
    }
    // Still described, for the operator who creates them.
    let deploy = Deploy::load();
    for name in ["strata-secrets", "strata-migrate-secrets"] {
        if deploy.object("Secret", name).is_none() {
            problems.push(format!("no template of Secret/{name} under deploy/k8s"));
        }
    }
    assert_no_problems("kustomizations", &problems);
}

#[test]
fn a_workload_an_autoscaler_scales_leaves_its_replica_count_to_it() {
    let deploy = Deploy::load();
    let mut problems = Vec::new();
    let mut autoscalers = 0;
    for (path, hpa) in deploy.objects_of("HorizontalPodAutoscaler") {
        autoscalers += 1;
        let target = &hpa["spec"]["scaleTargetRef"];
        let kind = str_at(target, "kind").unwrap_or_default();
        let name = str_at(target, "name").unwrap_or_default();
        match deploy.object(kind, name) {
            None => problems.push(format!(
                "{} scales {kind}/{name}, which deploy/k8s does not define",
                relative(path)
            )),
            Some(workload) if !workload["spec"]["replicas"].is_null() => problems.push(format!(
                "{kind}/{name} sets replicas: {:?}, which every `kubectl apply` puts back over \
                 the count the autoscaler of {} chose",
                workload["spec"]["replicas"],
                relative(path)
            )),
            Some(_) => {}
        }
    }
    assert!(autoscalers > 0, "deploy/k8s has no HorizontalPodAutoscaler");
    assert_no_problems("autoscaled workloads", &problems);
}

/// The `job` label Prometheus gives a pod's target once a PodMonitor endpoint's relabelings have
/// run: the operator's default, then each `replace` rule aimed at `job`.
fn relabelled_job(
    origin: &str,
    monitor: &Value,
    endpoint: &Value,
    pod_labels: &BTreeMap<String, String>,
) -> String {
    let namespace = "default";
    let mut job = format!(
        "{namespace}/{}",
        str_at(&monitor["metadata"], "name").unwrap_or_default()
    );
    if let Some(label) = str_at(&monitor["spec"], "jobLabel")
        && let Some(value) = pod_labels.get(label)
    {
        job.clone_from(value);
    }
    for rule in sequence(&endpoint["relabelings"]) {
        if str_at(rule, "targetLabel") != Some("job") {
            continue;
        }
        assert!(
            matches!(str_at(rule, "action"), None | Some("replace" | "Replace")),
            "{origin}: only `replace` relabelings of job are understood by this test"
        );
        assert!(
            matches!(str_at(rule, "regex"), None | Some("(.*)")),
            "{origin}: only the default relabeling regex is understood by this test"
        );
        let source: Vec<String> = sequence(&rule["sourceLabels"])
            .iter()
            .filter_map(scalar)
            .map(|meta| {
                let label = meta
                    .strip_prefix("__meta_kubernetes_pod_label_")
                    .unwrap_or_else(|| {
                        panic!("{origin}: relabeling from {meta} is not understood")
                    });
                pod_labels
                    .iter()
                    .find(|(name, _)| {
                        name.chars()
                            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                            .collect::<String>()
                            == label
                    })
                    .map(|(_, value)| value.clone())
                    .unwrap_or_default()
            })
            .collect();
        let joined = source.join(str_at(rule, "separator").unwrap_or(";"));
        job = str_at(rule, "replacement")
            .unwrap_or("$1")
            .replace("${1}", &joined)
            .replace("$1", &joined);
    }
    job
}

#[test]
fn the_pod_monitor_scrapes_each_process_on_its_metrics_port_under_the_job_the_alerts_expect() {
    let deploy = Deploy::load();
    assert!(
        deploy.objects_of("ServiceMonitor").next().is_none(),
        "a ServiceMonitor needs the metrics port on a Service, which leaves it out on purpose; \
         scrape the pods (PodMonitor), or teach this test"
    );
    let mut problems = Vec::new();
    let mut jobs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, monitor) in deploy.objects_of("PodMonitor") {
        let name = str_at(&monitor["metadata"], "name").unwrap_or("?");
        let origin = format!("{} PodMonitor/{name}", relative(path));
        assert_eq!(
            str_at(monitor, "apiVersion"),
            Some("monitoring.coreos.com/v1"),
            "{origin}"
        );
        let endpoints = sequence(&monitor["spec"]["podMetricsEndpoints"]);
        if endpoints.is_empty() {
            problems.push(format!("{origin} has no podMetricsEndpoints"));
        }
        let selected = deploy.selected(&monitor["spec"]["selector"]);
        if selected.is_empty() {
            problems.push(format!("{origin} selects no Strata pods"));
        }
        for process in selected {
            let Source::Kubernetes { pod_labels, .. } = &process.source else {
                continue;
            };
            let Some(metrics_port) = process.metrics_port() else {
                problems.push(format!(
                    "{origin} selects {}, which serves no metrics",
                    process.origin
                ));
                continue;
            };
            let scrape_path = process
                .probes
                .iter()
                .find(|probe| probe.kind == ProbeKind::Scrape)
                .map_or("/metrics", |probe| probe.path.as_str());
            for endpoint in endpoints {
                // A named port: the pod spec says which number it is.
                let Some(port) = str_at(endpoint, "port") else {
                    problems.push(format!("{origin}: an endpoint without a named `port`"));
                    continue;
                };
                let declared = process.declared_ports.get(port).copied();
                if declared != Some(metrics_port) {
                    problems.push(format!(
                        "{origin} scrapes port {port:?} ({declared:?}) of {}, which serves metrics on {metrics_port}",
                        process.origin
                    ));
                }
                let path = str_at(endpoint, "path").unwrap_or("/metrics");
                if path != scrape_path {
                    problems.push(format!(
                        "{origin} scrapes {path} of {}, which serves {scrape_path}",
                        process.origin
                    ));
                }
                jobs.entry(process.subcommand().to_owned())
                    .or_default()
                    .insert(relabelled_job(&origin, monitor, endpoint, pod_labels));
            }
        }
    }
    for process in &deploy.processes {
        if !matches!(process.source, Source::Kubernetes { .. }) || process.metrics_port().is_none()
        {
            continue;
        }
        let expected = SCRAPE_JOBS
            .iter()
            .find(|(subcommand, _)| *subcommand == process.subcommand())
            .map(|(_, job)| (*job).to_owned())
            .unwrap_or_else(|| panic!("{}: which scrape job is it?", process.origin));
        let got = jobs.get(process.subcommand()).cloned().unwrap_or_default();
        if got != BTreeSet::from([expected.clone()]) {
            problems.push(format!(
                "{} is scraped under job {got:?}, the alert rules expect {expected:?}",
                process.origin
            ));
        }
    }
    assert_no_problems("scraping", &problems);
}

#[test]
fn the_prometheus_rule_carries_the_rules_file_and_every_alert_is_labelled_and_documented() {
    let deploy = Deploy::load();
    let plain = single_document(&rules_file());
    let mut problems = Vec::new();

    let wrapped: Vec<&(PathBuf, Value)> = deploy.objects_of("PrometheusRule").collect();
    assert_eq!(wrapped.len(), 1, "one PrometheusRule under deploy/k8s");
    let (path, prometheus_rule) = wrapped[0];
    assert_eq!(
        str_at(prometheus_rule, "apiVersion"),
        Some("monitoring.coreos.com/v1")
    );
    if prometheus_rule["spec"] != plain {
        problems.push(format!(
            "the spec of {} is not {}: copy that file's groups under `spec:`",
            relative(path),
            relative(&rules_file())
        ));
    }

    let operations = read(&repository().join("docs/operations.md"));
    let anchors = heading_anchors(&operations);
    let mut seen = BTreeSet::new();
    for rule in rules(&plain) {
        let Some(alert) = str_at(rule, "alert") else {
            assert!(
                str_at(rule, "record").is_some(),
                "a rule neither alerts nor records: {rule:?}"
            );
            continue;
        };
        if !seen.insert(alert.to_owned()) {
            problems.push(format!("two alerts are called {alert}"));
        }
        if !alert.starts_with("Strata") || !alert.chars().all(|c| c.is_ascii_alphanumeric()) {
            problems.push(format!("{alert}: alert names are CamelCase, Strata…"));
        }
        if str_at(rule, "expr").is_none_or(|expr| expr.trim().is_empty()) {
            problems.push(format!("{alert} has no expr"));
        }
        if let Some(wait) = str_at(rule, "for") {
            duration_secs(wait, alert);
        }
        match str_at(&rule["labels"], "severity") {
            Some("critical" | "warning" | "info") => {}
            other => problems.push(format!(
                "{alert}: severity {other:?} is not critical, warning or info"
            )),
        }
        for annotation in ["summary", "description", "runbook_url"] {
            if str_at(&rule["annotations"], annotation).is_none_or(|text| text.trim().is_empty()) {
                problems.push(format!("{alert} has no {annotation}"));
            }
        }
        if let Some(url) = str_at(&rule["annotations"], "runbook_url") {
            match url.strip_prefix("docs/operations.md#") {
                Some(anchor) if anchors.contains(anchor) => {}
                _ => problems.push(format!(
                    "{alert}: runbook_url {url} is not a heading of docs/operations.md"
                )),
            }
        }
    }

    // The docs name every alert by its rule, and no rule that does not exist.
    let section = markdown_section(&operations, "Alerts worth setting");
    let documented: BTreeSet<String> = section
        .lines()
        .filter(|line| line.starts_with('|'))
        .flat_map(|line| line.split('`').skip(1).step_by(2))
        .filter(|word| {
            word.strip_prefix("Strata")
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_uppercase()))
        })
        .map(str::to_owned)
        .collect();
    if documented != seen {
        problems.push(format!(
            "docs/operations.md's alert table names {documented:?}; the rules are {seen:?}"
        ));
    }
    assert_no_problems("alert rules", &problems);
}

#[test]
fn every_alert_has_promtool_cases_where_it_fires_and_where_it_does_not() {
    let plain = single_document(&rules_file());
    let tests = single_document(&rules_tests_file());
    let tests_dir = rules_tests_file()
        .parent()
        .expect("a directory")
        .to_path_buf();
    let rule_files: Vec<PathBuf> = sequence(&tests["rule_files"])
        .iter()
        .filter_map(scalar)
        .map(|file| tests_dir.join(file))
        .collect();
    assert_eq!(
        rule_files,
        vec![rules_file()],
        "the promtool tests load the rules file"
    );

    let mut fires = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for case in sequence(&tests["tests"]) {
        for check in sequence(&case["alert_rule_test"]) {
            let alert = str_at(check, "alertname").expect("alertname").to_owned();
            if sequence(&check["exp_alerts"]).is_empty() {
                quiet.insert(alert);
            } else {
                fires.insert(alert);
            }
        }
    }
    let alerts: BTreeSet<String> = alert_names(&plain).into_iter().collect();
    let mut problems = Vec::new();
    for alert in &alerts {
        if !fires.contains(alert) {
            problems.push(format!("no promtool case shows {alert} firing"));
        }
        if !quiet.contains(alert) {
            problems.push(format!(
                "no promtool case shows {alert} quiet (too early, or healthy)"
            ));
        }
    }
    for alert in fires.union(&quiet) {
        if !alerts.contains(alert) {
            problems.push(format!(
                "the promtool tests check {alert}, which no rule defines"
            ));
        }
    }
    assert_no_problems("promtool cases", &problems);
}

/// `cargo xtask test` installs promtool and runs the same two commands; here they run only when
/// promtool is already installed.
#[test]
fn promtool_accepts_the_rules_and_passes_their_tests_when_installed() {
    if Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        eprintln!("promtool is not installed; `cargo xtask test` installs and runs it");
        return;
    }
    for (command, file) in [("check", rules_file()), ("test", rules_tests_file())] {
        let output = Command::new("promtool")
            .args([command, "rules"])
            .arg(&file)
            .output()
            .expect("promtool runs");
        assert!(
            output.status.success(),
            "promtool {command} rules {}:\n{}{}",
            relative(&file),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The real binary answers every probe
// ---------------------------------------------------------------------------------------------

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

/// A child process killed when dropped, so a failing assertion leaves nothing running.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `strata` as `process` runs it, on the test servers: the manifest's own environment with
/// the connections, secret and listen address swapped for the test's.
fn start(process: &Process, database_url: &str, overrides: &[(&str, String)]) -> Running {
    let mut env = process.env.clone();
    env.retain(|name, _| !name.starts_with("OTEL_"));
    env.insert("DATABASE_URL".into(), database_url.to_owned());
    env.insert("REDIS_URL".into(), strata_redis::testing::server_url());
    env.insert(
        "STRATA_REDIS_PREFIX".into(),
        format!("test:{}:", uuid::Uuid::new_v4().simple()),
    );
    env.insert(
        "STRATA_JWT_SECRET".into(),
        "deploy-test-secret-deploy-test-secret!".into(),
    );
    env.insert("STRATA_ENV".into(), "test".into());
    env.insert("STRATA_HOST".into(), "127.0.0.1".into());
    env.insert("STRATA_LOG".into(), "warn".into());
    for (name, value) in overrides {
        env.insert((*name).to_owned(), value.clone());
    }
    let child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(&process.args)
        .env_clear()
        .envs(&env)
        .stdout(Stdio::null())
        .spawn()
        .expect("strata starts");
    Running(child)
}

async fn wait_for_200(client: &reqwest::Client, url: &str, running: &mut Running) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = client.get(url).send().await
            && response.status() == reqwest::StatusCode::OK
        {
            return;
        }
        assert!(
            running.0.try_wait().expect("child status").is_none(),
            "strata exited before {url} answered 200"
        );
        assert!(Instant::now() < deadline, "{url} never answered 200");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_probe_path_answers_200_from_the_real_binary() {
    let deploy = Deploy::load();
    let database = TestDatabase::create().await.expect("test database");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");

    // Keyed by the listener: `strata serve` scrapes go to its metrics port, the rest to its API
    // port; `strata worker` serves everything on one.
    let mut paths: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for process in &deploy.processes {
        for probe in &process.probes {
            paths
                .entry(match (process.subcommand(), probe.kind) {
                    ("serve", ProbeKind::Scrape) => "serve metrics",
                    ("serve", _) => "serve",
                    ("worker", _) => "worker",
                    (other, _) => panic!("{}: probes on `strata {other}`", process.origin),
                })
                .or_default()
                .insert(probe.path.clone());
        }
    }
    // The load balancer's health check too.
    for line in read(&deploy_dir().join("haproxy.cfg")).lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.starts_with(&["http-check", "send"])
            && let Some(at) = words.iter().position(|w| *w == "uri")
        {
            paths
                .entry("serve")
                .or_default()
                .insert(words[at + 1].to_owned());
        }
    }
    assert!(
        ["serve", "serve metrics", "worker"]
            .iter()
            .all(|listener| paths.contains_key(listener)),
        "{paths:?}"
    );

    // Each from a Kubernetes container, with its ConfigMap and Secret (the compose processes
    // share the same settings shape; their variables are checked by loading them above).
    let kubernetes = |subcommand: &str| {
        deploy
            .processes_running(subcommand)
            .find(|process| matches!(process.source, Source::Kubernetes { .. }))
            .unwrap_or_else(|| panic!("no Kubernetes container runs strata {subcommand}"))
    };

    let (port, metrics_port) = (free_port(), free_port());
    let mut api = start(
        kubernetes("serve"),
        database.url(),
        &[
            ("STRATA_PORT", port.to_string()),
            ("STRATA_METRICS_PORT", metrics_port.to_string()),
        ],
    );
    let base = format!("http://127.0.0.1:{port}");
    let metrics_base = format!("http://127.0.0.1:{metrics_port}");
    wait_for_200(&client, &format!("{base}/health/ready"), &mut api).await;
    let status = |url: String| {
        let client = client.clone();
        async move { client.get(url).send().await.expect("request").status() }
    };
    for path in &paths["serve"] {
        assert_eq!(
            status(format!("{base}{path}")).await,
            reqwest::StatusCode::OK,
            "strata serve: GET {path}"
        );
    }
    for path in &paths["serve metrics"] {
        assert_eq!(
            status(format!("{metrics_base}{path}")).await,
            reqwest::StatusCode::OK,
            "strata serve, metrics port: GET {path}"
        );
        assert_eq!(
            status(format!("{base}{path}")).await,
            reqwest::StatusCode::NOT_FOUND,
            "strata serve, API port: GET {path} is for operators only"
        );
    }
    drop(api);

    let port = free_port();
    let mut worker = start(
        kubernetes("worker"),
        database.url(),
        &[("STRATA_WORKER_METRICS_PORT", port.to_string())],
    );
    let base = format!("http://127.0.0.1:{port}");
    wait_for_200(&client, &format!("{base}/health/live"), &mut worker).await;
    for path in &paths["worker"] {
        let response = client
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect("request");
        assert_eq!(
            response.status(),
            reqwest::StatusCode::OK,
            "strata worker: GET {path}"
        );
    }
}

/// The README's Kubernetes walk-through is what an operator types first: every object it waits
/// on or execs into exists, the Secrets it creates are the ones the manifests read (with every
/// key of the template), the kustomizations it applies exist, and the `strata` commands parse.
#[test]
fn the_readmes_kubernetes_walk_through_matches_the_manifests() {
    let readme = read(&repository().join("README.md"));
    let section = readme
        .split("\n## Deploy")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("README.md has a Deploy section");
    // The shell commands of the section's code blocks, continuation lines joined.
    let mut commands = Vec::new();
    let mut in_block = false;
    let mut current = String::new();
    for line in section.lines().map(str::trim) {
        if line.starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if !in_block || line.starts_with('#') || line.is_empty() {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => {
                current.push_str(line);
                commands.push(std::mem::take(&mut current));
            }
        }
    }
    let deploy = Deploy::load();
    let exists = |kind: &str, name: &str| {
        deploy.objects_of(kind).any(|(path, object)| {
            str_at(&object["metadata"], "name") == Some(name)
                && relative(path) != "deploy/k8s/secret.yaml"
        })
    };
    let mut problems = Vec::new();
    let mut created_secrets: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut kubectl_commands = 0;
    for command in commands.iter().flat_map(|line| line.split("&&")) {
        let words = shlex::split(command.split(" #").next().unwrap_or(command))
            .unwrap_or_else(|| panic!("README: cannot split {command:?}"));
        if words.first().map(String::as_str) != Some("kubectl") {
            continue;
        }
        kubectl_commands += 1;
        for word in &words {
            let Some((kind, name)) = word.split_once('/') else {
                continue;
            };
            let kind = match kind {
                "deployment" => "Deployment",
                "job" => "Job",
                "service" => "Service",
                _ => continue,
            };
            if !exists(kind, name) {
                problems.push(format!(
                    "README: {command:?} names {kind}/{name}, which deploy/k8s lacks"
                ));
            }
        }
        match words.get(1..3) {
            Some([verb, object]) if verb == "create" && object == "secret" => {
                let name = words.get(4).cloned().unwrap_or_default();
                let keys = words
                    .iter()
                    .filter_map(|word| word.strip_prefix("--from-literal="))
                    .filter_map(|pair| pair.split_once('=').map(|(key, _)| key.to_owned()))
                    .collect();
                created_secrets.insert(name, keys);
            }
            Some([verb, flag]) if verb == "apply" && flag == "-k" => {
                let dir = words.get(3).cloned().unwrap_or_default();
                if !repository().join(&dir).join("kustomization.yaml").is_file() {
                    problems.push(format!(
                        "README: {command:?} applies {dir}, no kustomization"
                    ));
                }
            }
            Some([verb, _]) if verb == "exec" => {
                let at = words.iter().position(|word| word == "--").map(|at| at + 1);
                let strata = at.map(|at| &words[at..]).unwrap_or_default();
                if let Err(error) = Cli::try_parse_from(strata) {
                    problems.push(format!("README: {command:?}: strata refuses it: {error}"));
                }
            }
            _ => {}
        }
    }
    assert!(
        kubectl_commands >= 8,
        "README's Deploy section lost its kubectl walk-through"
    );
    // The Secrets the walk creates are those of the template, with all its keys.
    for (path, secret) in deploy.objects_of("Secret") {
        if relative(path) != "deploy/k8s/secret.yaml" {
            continue;
        }
        let name = str_at(&secret["metadata"], "name").unwrap_or_default();
        let keys: BTreeSet<String> = labels(&secret["stringData"]).into_keys().collect();
        match created_secrets.get(name) {
            None => problems.push(format!(
                "README: the walk-through never creates Secret {name}"
            )),
            Some(created) if created != &keys => problems.push(format!(
                "README: Secret {name} is created with {created:?}, the manifests read {keys:?}"
            )),
            Some(_) => {}
        }
    }
    assert_no_problems("the README's Kubernetes walk-through", &problems);
}
