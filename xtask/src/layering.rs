//! The crate dependency rule (SPEC §1), checked over `cargo metadata`.
//!
//! Only normal dependencies count: dev-dependencies (mocks, test harnesses) and build
//! dependencies never reach a production binary. The graph is resolved for the host platform, so
//! that a dependency only some other target pulls in (a wasm-only crate under `uuid`, say) is not
//! mistaken for one of ours. The checker is a pure function over that graph so that it can be fed
//! small synthetic graphs.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use anyhow::{Context, bail};
use serde_json::Value;

/// One layer's constraints.
pub struct Rule {
    /// The crate the rule is about.
    pub krate: &'static str,
    /// The workspace crates it may reach.
    pub allowed_workspace: &'static [&'static str],
    /// Crates it must not reach, however indirectly.
    pub forbidden: &'static [&'static str],
}

const WORKSPACE_PREFIX: &str = "strata-";

/// The web framework and storage drivers that only adapters (and the server) may reach.
const ADAPTER_FRAMEWORKS: &[&str] = &[
    "actix-web",
    "actix-http",
    "diesel",
    "diesel-async",
    "redis",
    "tokio-postgres",
    "bb8",
];

/// The rule of SPEC §1; strata-server, the composition root, may depend on anything.
pub const RULES: &[Rule] = &[
    Rule {
        krate: "strata-domain",
        allowed_workspace: &[],
        forbidden: &[
            "tokio",
            "async-std",
            "futures",
            "futures-util",
            "actix-web",
            "actix-http",
            "hyper",
            "mio",
            "diesel",
            "diesel-async",
            "redis",
            "tokio-postgres",
            "reqwest",
            "bb8",
        ],
    },
    Rule {
        krate: "strata-ports",
        allowed_workspace: &["strata-domain"],
        forbidden: ADAPTER_FRAMEWORKS,
    },
    Rule {
        krate: "strata-services",
        allowed_workspace: &["strata-domain", "strata-ports"],
        forbidden: ADAPTER_FRAMEWORKS,
    },
    Rule {
        krate: "strata-postgres",
        allowed_workspace: &["strata-domain", "strata-ports"],
        forbidden: &["actix-web", "actix-http", "redis"],
    },
    Rule {
        krate: "strata-redis",
        allowed_workspace: &["strata-domain", "strata-ports"],
        forbidden: &[
            "actix-web",
            "actix-http",
            "diesel",
            "diesel-async",
            "tokio-postgres",
        ],
    },
    Rule {
        krate: "strata-http",
        allowed_workspace: &["strata-domain", "strata-ports", "strata-services"],
        forbidden: &["diesel", "diesel-async", "redis", "tokio-postgres", "bb8"],
    },
];

/// Packages and their normal dependencies, by package id.
#[derive(Debug, Default)]
pub struct Graph {
    names: BTreeMap<String, String>,
    edges: BTreeMap<String, Vec<String>>,
}

impl Graph {
    /// Adds a package (ids are unique; names repeat across versions).
    pub fn add_package(&mut self, id: &str, name: &str) {
        self.names.insert(id.to_owned(), name.to_owned());
        self.edges.entry(id.to_owned()).or_default();
    }

    /// Adds a normal dependency edge.
    pub fn add_dependency(&mut self, from: &str, to: &str) {
        self.edges
            .entry(from.to_owned())
            .or_default()
            .push(to.to_owned());
    }

    /// Reads `cargo metadata --format-version 1` output, keeping normal dependencies only.
    pub fn from_metadata(metadata: &Value) -> anyhow::Result<Self> {
        let mut graph = Self::default();
        let packages = metadata["packages"]
            .as_array()
            .context("metadata without packages")?;
        for package in packages {
            let (Some(id), Some(name)) = (package["id"].as_str(), package["name"].as_str()) else {
                bail!("a package without id or name");
            };
            graph.add_package(id, name);
        }
        let nodes = metadata["resolve"]["nodes"]
            .as_array()
            .context("metadata without a resolved graph (was --no-deps given?)")?;
        for node in nodes {
            let from = node["id"].as_str().context("a node without id")?;
            for dep in node["deps"].as_array().into_iter().flatten() {
                let to = dep["pkg"].as_str().context("a dependency without pkg")?;
                let normal = dep["dep_kinds"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|kind| kind["kind"].is_null());
                if normal {
                    graph.add_dependency(from, to);
                }
            }
        }
        Ok(graph)
    }

    fn name(&self, id: &str) -> String {
        self.names.get(id).map_or(id, String::as_str).to_owned()
    }

    fn ids_named(&self, name: &str) -> Vec<&str> {
        self.names
            .iter()
            .filter(|(_, n)| n.as_str() == name)
            .map(|(id, _)| id.as_str())
            .collect()
    }

    /// Every package reachable from `start`, each with the shortest path that reaches it.
    fn reachable(&self, start: &str) -> BTreeMap<String, Vec<String>> {
        let mut paths: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut queue = VecDeque::from([start.to_owned()]);
        let mut seen = BTreeSet::from([start.to_owned()]);
        let mut parent: BTreeMap<String, String> = BTreeMap::new();
        while let Some(current) = queue.pop_front() {
            for next in self.edges.get(&current).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    parent.insert(next.clone(), current.clone());
                    queue.push_back(next.clone());
                }
            }
        }
        for id in seen.iter().filter(|id| id.as_str() != start) {
            let mut path = vec![self.name(id)];
            let mut at = id;
            while let Some(up) = parent.get(at) {
                path.push(self.name(up));
                at = up;
            }
            path.reverse();
            paths.insert(id.clone(), path);
        }
        paths
    }
}

/// A dependency the rule forbids, with the path that brings it in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The crate whose rule is broken.
    pub krate: String,
    /// The crate it must not reach.
    pub forbidden: String,
    /// From `krate` to `forbidden`, one dependency per step.
    pub path: Vec<String>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} must not depend on {}: {}",
            self.krate,
            self.forbidden,
            self.path.join(" -> ")
        )
    }
}

/// Every violation of `rules` in `graph`; a rule whose crate is absent is skipped.
pub fn check(graph: &Graph, rules: &[Rule]) -> Vec<Violation> {
    let mut violations = Vec::new();
    for rule in rules {
        for id in graph.ids_named(rule.krate) {
            for path in graph.reachable(id).into_values() {
                let Some(reached) = path.last() else {
                    continue;
                };
                let workspace_breach = reached.starts_with(WORKSPACE_PREFIX)
                    && reached != rule.krate
                    && !rule.allowed_workspace.contains(&reached.as_str());
                if workspace_breach || rule.forbidden.contains(&reached.as_str()) {
                    violations.push(Violation {
                        krate: rule.krate.to_owned(),
                        forbidden: reached.clone(),
                        path,
                    });
                }
            }
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::Command;

    use super::*;

    fn graph(edges: &[(&str, &str)]) -> Graph {
        let mut graph = Graph::default();
        for (from, to) in edges {
            graph.add_package(from, from);
            graph.add_package(to, to);
        }
        for (from, to) in edges {
            graph.add_dependency(from, to);
        }
        graph
    }

    fn host_triple() -> String {
        let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
        let output = Command::new(rustc).arg("-vV").output().expect("rustc -vV");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .find_map(|line| line.strip_prefix("host: "))
            .expect("rustc -vV names the host")
            .trim()
            .to_owned()
    }

    #[test]
    fn the_workspace_follows_the_rule() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let output = Command::new(cargo)
            .args(["metadata", "--format-version", "1", "--filter-platform"])
            .arg(host_triple())
            .arg("--manifest-path")
            .arg(&manifest)
            .output()
            .expect("cargo metadata runs");
        assert!(
            output.status.success(),
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let metadata: Value = serde_json::from_slice(&output.stdout).expect("metadata is JSON");
        let graph = Graph::from_metadata(&metadata).expect("metadata has a resolved graph");
        for rule in RULES {
            assert!(
                !graph.ids_named(rule.krate).is_empty(),
                "{} is missing from the workspace",
                rule.krate
            );
        }
        let violations = check(&graph, RULES);
        let report: Vec<String> = violations.iter().map(ToString::to_string).collect();
        assert!(
            violations.is_empty(),
            "the crate dependency rule is broken:\n{}",
            report.join("\n")
        );
    }

    #[test]
    fn services_reaching_actix_through_an_intermediate_crate_is_reported() {
        let g = graph(&[
            ("strata-services", "strata-ports"),
            ("strata-services", "helper"),
            ("helper", "actix-web"),
        ]);
        let violations = check(&g, RULES);
        assert_eq!(
            violations,
            vec![Violation {
                krate: "strata-services".into(),
                forbidden: "actix-web".into(),
                path: vec![
                    "strata-services".into(),
                    "helper".into(),
                    "actix-web".into()
                ],
            }]
        );
        assert_eq!(
            violations[0].to_string(),
            "strata-services must not depend on actix-web: strata-services -> helper -> actix-web"
        );
    }

    #[test]
    fn domain_depending_on_ports_is_reported() {
        let g = graph(&[
            ("strata-domain", "strata-ports"),
            ("strata-domain", "serde"),
        ]);
        let violations = check(&g, RULES);
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].forbidden, "strata-ports");
        assert_eq!(violations[0].path, ["strata-domain", "strata-ports"]);
    }

    #[test]
    fn domain_reaching_an_async_runtime_transitively_is_reported() {
        let g = graph(&[("strata-domain", "chrono"), ("chrono", "tokio")]);
        let violations = check(&g, RULES);
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].path, ["strata-domain", "chrono", "tokio"]);
    }

    #[test]
    fn http_reaching_diesel_through_services_is_reported_for_both() {
        let g = graph(&[
            ("strata-http", "strata-services"),
            ("strata-services", "diesel"),
        ]);
        let mut found: Vec<String> = check(&g, RULES)
            .iter()
            .map(|v| format!("{}: {}", v.krate, v.path.join(" -> ")))
            .collect();
        found.sort();
        assert_eq!(
            found,
            [
                "strata-http: strata-http -> strata-services -> diesel",
                "strata-services: strata-services -> diesel",
            ]
        );
    }

    #[test]
    fn allowed_layers_and_the_server_pass() {
        let g = graph(&[
            ("strata-server", "strata-http"),
            ("strata-server", "strata-postgres"),
            ("strata-server", "strata-redis"),
            ("strata-http", "strata-services"),
            ("strata-http", "actix-web"),
            ("strata-services", "strata-ports"),
            ("strata-services", "tokio"),
            ("strata-ports", "strata-domain"),
            ("strata-postgres", "diesel-async"),
            ("strata-postgres", "strata-ports"),
            ("strata-redis", "redis"),
            ("strata-redis", "strata-ports"),
            ("strata-domain", "serde"),
        ]);
        assert_eq!(check(&g, RULES), Vec::new());
    }

    #[test]
    fn only_normal_dependencies_are_read_from_metadata() {
        let metadata = serde_json::json!({
            "packages": [
                {"id": "d", "name": "strata-domain"},
                {"id": "t", "name": "tokio"},
                {"id": "p", "name": "proptest"},
            ],
            "resolve": {"nodes": [
                {"id": "d", "deps": [
                    {"pkg": "p", "dep_kinds": [{"kind": "dev", "target": null}]},
                    {"pkg": "t", "dep_kinds": [{"kind": "build", "target": null}]},
                ]},
                {"id": "t", "deps": []},
                {"id": "p", "deps": [
                    {"pkg": "t", "dep_kinds": [{"kind": null, "target": null}]},
                ]},
            ]},
        });
        let graph = Graph::from_metadata(&metadata).unwrap();
        assert!(check(&graph, RULES).is_empty());

        let mut with_normal = metadata.clone();
        with_normal["resolve"]["nodes"][0]["deps"][1]["dep_kinds"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"kind": null, "target": null}));
        let graph = Graph::from_metadata(&with_normal).unwrap();
        let violations = check(&graph, RULES);
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].path, ["strata-domain", "tokio"]);
    }
}
