//! The alert rules and the Grafana dashboard query only metrics Strata exports.
//!
//! What Strata exports is asked of Strata, not written down here: `strata_server::metrics::install`
//! runs under a recorder of this file's that keeps every metric it describes (the HELP lines of the
//! scrape), then each of those is recorded once through the real Prometheus recorder that
//! `install` set up, and the names of the rendered scrape's series are the exported ones. So a
//! histogram counts as `_bucket`, `_sum` and `_count` only where Strata gives it buckets (without,
//! the exporter renders a summary, and `histogram_quantile` would plot nothing).
//!
//! Every PromQL expression of `deploy/prometheus/strata-rules.yaml` and of the dashboard (its
//! panels' targets and its variables' `label_values` queries) is parsed with a PromQL parser, and
//! each selector must name one of those series, or one of the few that Prometheus makes itself
//! ([`EXTERNAL`]). Names shared with other exporters (`up`, `process_*`, ...) must be narrowed to
//! Strata's jobs.
//!
//! Its own test binary: the metrics recorder is process-wide, and `install` must first run here.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers fail loudly by design

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use promql_parser::label::MatchOp;
use promql_parser::parser::{self, Expr, VectorSelector};
use promql_parser::util::{ExprVisitor, walk_expr};
use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;

/// Series Prometheus makes itself, allowed in the rules and the dashboard although Strata does not
/// export them.
const EXTERNAL: [&str; 2] = [
    // Written by Prometheus for every scrape target: 0 when the scrape failed.
    "up",
    // Written by the blackbox exporter's probe of `GET /health` (StrataDependencyDown).
    "probe_success",
];

/// The `job` label values the rules and the dashboard may select: the PodMonitor's two jobs
/// (checked against the manifests by tests/deploy.rs) and the blackbox probe's.
const JOBS: [&str; 3] = ["strata-api", "strata-worker", "strata-health"];

/// Metrics Strata describes that the dashboard leaves out on purpose, each with why.
const NOT_PLOTTED: [(&str, &str); 1] = [(
    "process_virtual_memory_max_bytes",
    "the address-space limit, unlimited (2^64) in practice: plotted, it flattens every other line",
)];

/// What the dashboard's Grafana variables stand for while its expressions are parsed: a range for
/// the interval variables; the others sit in label matchers' strings, which the parser keeps as
/// they are.
const GRAFANA_RANGES: [&str; 4] = [
    "$__rate_interval",
    "$__interval",
    "$__range",
    "${__rate_interval}",
];

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn dashboard_file() -> PathBuf {
    repository().join("deploy/k8s/monitoring/strata-dashboard.json")
}

fn rules_file() -> PathBuf {
    repository().join("deploy/prometheus/strata-rules.yaml")
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
// What Strata exports
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// A recorder that keeps what is described and records nothing.
#[derive(Default)]
struct Descriptions(Mutex<BTreeMap<String, Kind>>);

impl Descriptions {
    fn keep(&self, name: &KeyName, kind: Kind) {
        self.0
            .lock()
            .expect("not poisoned")
            .insert(name.as_str().to_owned(), kind);
    }
}

impl Recorder for Descriptions {
    fn describe_counter(&self, key: KeyName, _: Option<Unit>, _: SharedString) {
        self.keep(&key, Kind::Counter);
    }

    fn describe_gauge(&self, key: KeyName, _: Option<Unit>, _: SharedString) {
        self.keep(&key, Kind::Gauge);
    }

    fn describe_histogram(&self, key: KeyName, _: Option<Unit>, _: SharedString) {
        self.keep(&key, Kind::Histogram);
    }

    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        Counter::noop()
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

/// The metrics Strata describes, and the series names its scrape renders for them.
struct Exported {
    described: BTreeMap<String, Kind>,
    series: BTreeSet<String>,
}

fn exported() -> &'static Exported {
    static EXPORTED: OnceLock<Exported> = OnceLock::new();
    EXPORTED.get_or_init(|| {
        let descriptions = Descriptions::default();
        let handle = metrics::with_local_recorder(&descriptions, strata_server::metrics::install)
            .expect("the metrics recorder installs");
        let described = descriptions.0.into_inner().expect("not poisoned");
        assert!(
            !described.is_empty(),
            "install() described nothing: it ran before this test's recorder could listen"
        );
        for (name, kind) in &described {
            match kind {
                Kind::Counter => metrics::counter!(name.clone()).increment(1),
                Kind::Gauge => metrics::gauge!(name.clone()).set(1.0),
                Kind::Histogram => metrics::histogram!(name.clone()).record(0.01),
            }
        }
        let series = handle
            .render()
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .map(|line| {
                line.split(['{', ' '])
                    .next()
                    .expect("a series name")
                    .to_owned()
            })
            .collect();
        Exported { described, series }
    })
}

// ---------------------------------------------------------------------------------------------
// The PromQL of the rules and the dashboard
// ---------------------------------------------------------------------------------------------

/// One PromQL expression and where it comes from.
struct Query {
    origin: String,
    promql: String,
}

fn rule_queries() -> Vec<Query> {
    let rules: Yaml = serde_yaml_ng::from_str(&read(&rules_file())).expect("the rules file parses");
    let mut queries = Vec::new();
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let name = rule
                .get("alert")
                .or_else(|| rule.get("record"))
                .and_then(Yaml::as_str)
                .expect("a rule alerts or records");
            queries.push(Query {
                origin: format!("deploy/prometheus/strata-rules.yaml {name}"),
                promql: rule["expr"].as_str().expect("expr").to_owned(),
            });
        }
    }
    queries
}

fn dashboard() -> Json {
    serde_json::from_str(&read(&dashboard_file())).expect("the dashboard is JSON")
}

/// Every panel, rows' nested panels included.
fn panels(dashboard: &Json) -> Vec<&Json> {
    fn walk<'a>(panels: &'a Json, into: &mut Vec<&'a Json>) {
        for panel in panels.as_array().into_iter().flatten() {
            into.push(panel);
            walk(&panel["panels"], into);
        }
    }
    let mut all = Vec::new();
    walk(&dashboard["panels"], &mut all);
    all
}

fn dashboard_queries(dashboard: &Json) -> Vec<Query> {
    let mut queries = Vec::new();
    for panel in panels(dashboard) {
        let title = panel["title"].as_str().unwrap_or("?");
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("panel {title:?}: a target without expr"));
            queries.push(Query {
                origin: format!("dashboard panel {title:?}"),
                promql: expr.to_owned(),
            });
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if variable["type"] != "query" {
            continue;
        }
        let name = variable["name"].as_str().unwrap_or("?");
        let query = variable["query"]["query"]
            .as_str()
            .or_else(|| variable["query"].as_str())
            .expect("a query variable's query");
        // label_values(selector, label): Grafana's, around a PromQL selector.
        let selector = query
            .strip_prefix("label_values(")
            .and_then(|rest| rest.strip_suffix(')'))
            .and_then(|inner| inner.rsplit_once(','))
            .map(|(selector, _label)| selector.trim())
            .unwrap_or_else(|| {
                panic!("variable ${name}: {query:?} is not label_values(selector, label)")
            });
        queries.push(Query {
            origin: format!("dashboard variable ${name}"),
            promql: selector.to_owned(),
        });
    }
    queries
}

/// The vector selectors of an expression.
struct Selectors(Vec<VectorSelector>);

impl ExprVisitor for Selectors {
    type Error = ();

    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, ()> {
        match expr {
            Expr::VectorSelector(selector) => self.0.push(selector.clone()),
            Expr::MatrixSelector(matrix) => self.0.push(matrix.vs.clone()),
            _ => {}
        }
        Ok(true)
    }
}

/// The selectors of `query`, with Grafana's interval variables read as a range.
fn selectors(query: &Query) -> Vec<VectorSelector> {
    let mut promql = query.promql.clone();
    for variable in GRAFANA_RANGES {
        promql = promql.replace(variable, "5m");
    }
    let expr = parser::parse(&promql)
        .unwrap_or_else(|error| panic!("{}: not PromQL: {error}\n{promql}", query.origin));
    let mut selectors = Selectors(Vec::new());
    walk_expr(&mut selectors, &expr).expect("the walk never fails");
    selectors.0
}

/// A selector's metric name: `name{…}` or `{__name__="name", …}`.
fn metric_name(selector: &VectorSelector) -> Option<String> {
    selector.name.clone().or_else(|| {
        selector
            .matchers
            .matchers
            .iter()
            .find(|matcher| matcher.name == "__name__" && matcher.op == MatchOp::Equal)
            .map(|matcher| matcher.value.clone())
    })
}

/// Whether other exporters write the same name (Prometheus' own, the standard process metrics of
/// every client library), so that a query of it must narrow it to Strata's jobs.
fn shared_name(name: &str) -> bool {
    EXTERNAL.contains(&name) || name.starts_with("process_")
}

// ---------------------------------------------------------------------------------------------
// The checks
// ---------------------------------------------------------------------------------------------

#[test]
fn every_metric_the_alerts_and_the_dashboard_query_is_one_strata_exports() {
    let exported = exported();
    let mut queries = rule_queries();
    queries.extend(dashboard_queries(&dashboard()));
    assert!(queries.len() > 20, "only {} queries found", queries.len());

    let mut problems = Vec::new();
    let mut missing = BTreeSet::new();
    for query in &queries {
        for selector in selectors(query) {
            let Some(name) = metric_name(&selector) else {
                problems.push(format!(
                    "{}: a selector without a metric name: {selector}",
                    query.origin
                ));
                continue;
            };
            if !exported.series.contains(&name) && !EXTERNAL.contains(&name.as_str()) {
                problems.push(format!(
                    "{}: {name} is not a series Strata exports",
                    query.origin
                ));
                missing.insert(name.clone());
            }
            let job_values: Vec<&str> = selector
                .matchers
                .matchers
                .iter()
                .filter(|matcher| matcher.name == "job")
                .map(|matcher| matcher.value.as_str())
                .collect();
            if shared_name(&name) && job_values.is_empty() {
                problems.push(format!(
                    "{}: {name} is written by other exporters too; select Strata's job",
                    query.origin
                ));
            }
            for value in job_values {
                let known =
                    value.starts_with('$') || value.split('|').all(|job| JOBS.contains(&job));
                if !known {
                    problems.push(format!(
                        "{}: job {value:?} is none of {JOBS:?}",
                        query.origin
                    ));
                }
            }
        }
    }
    if !missing.is_empty() {
        eprintln!("not exported: {missing:?}");
    }
    assert_no_problems("queries", &problems);
}

#[test]
fn the_dashboard_plots_every_metric_strata_describes() {
    let exported = exported();
    let plotted: BTreeSet<String> = dashboard_queries(&dashboard())
        .iter()
        .flat_map(selectors)
        .filter_map(|selector| metric_name(&selector))
        .collect();
    let unplotted: Vec<&String> = exported
        .described
        .iter()
        .filter(|(name, _)| !NOT_PLOTTED.iter().any(|(left_out, _)| left_out == name))
        .filter(|(name, kind)| {
            let series = match kind {
                Kind::Histogram => vec![format!("{name}_bucket"), format!("{name}_count")],
                Kind::Counter | Kind::Gauge => vec![(*name).clone()],
            };
            !series.iter().any(|series| plotted.contains(series))
        })
        .map(|(name, _)| name)
        .collect();
    assert!(
        unplotted.is_empty(),
        "the dashboard plots nothing of {unplotted:?}"
    );
}

#[test]
fn the_dashboard_is_importable_with_the_data_source_as_a_variable() {
    let dashboard = dashboard();
    let mut problems = Vec::new();
    for field in ["title", "uid"] {
        if dashboard[field].as_str().is_none_or(str::is_empty) {
            problems.push(format!("no {field}"));
        }
    }
    if dashboard.get("id").is_some_and(|id| !id.is_null()) {
        problems
            .push("an `id` ties the dashboard to one Grafana database; leave it out".to_owned());
    }
    let variables = dashboard["templating"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !variables.iter().any(|v| {
        v["name"] == "datasource" && v["type"] == "datasource" && v["query"] == "prometheus"
    }) {
        problems.push("no `datasource` variable of type datasource (prometheus)".to_owned());
    }
    let expected_source = serde_json::json!({"type": "prometheus", "uid": "${datasource}"});
    for variable in &variables {
        if variable["type"] == "query" && variable["datasource"] != expected_source {
            problems.push(format!(
                "variable {} does not query ${{datasource}}",
                variable["name"]
            ));
        }
    }
    let mut ids = BTreeSet::new();
    for panel in panels(&dashboard) {
        let title = panel["title"].as_str().unwrap_or("?");
        if !panel["id"].as_u64().is_some_and(|id| ids.insert(id)) {
            problems.push(format!("panel {title:?}: no id, or one another panel has"));
        }
        let grid = &panel["gridPos"];
        let (x, w) = (grid["x"].as_u64(), grid["w"].as_u64());
        if !matches!((x, w), (Some(x), Some(w)) if w > 0 && x + w <= 24)
            || grid["y"].as_u64().is_none()
        {
            problems.push(format!(
                "panel {title:?}: gridPos {grid} is outside the 24 columns"
            ));
        }
        if panel["type"] == "row" {
            continue;
        }
        if panel["datasource"] != expected_source {
            problems.push(format!("panel {title:?} does not use ${{datasource}}"));
        }
        let targets = panel["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            problems.push(format!("panel {title:?} plots nothing"));
        }
        let mut ref_ids = BTreeSet::new();
        for target in &targets {
            if target["datasource"] != expected_source {
                problems.push(format!(
                    "panel {title:?}: a target does not use ${{datasource}}"
                ));
            }
            if !target["refId"]
                .as_str()
                .is_some_and(|id| ref_ids.insert(id.to_owned()))
            {
                problems.push(format!("panel {title:?}: a target without its own refId"));
            }
        }
    }
    assert_no_problems("dashboard", &problems);
}

#[test]
fn the_exported_names_come_from_the_scrape_itself() {
    // The capture above is what every other check trusts: it must see what docs/operations.md
    // promises, rendered as Prometheus expects (a histogram with buckets, counters as named).
    let exported = exported();
    for series in [
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "http_request_duration_seconds_count",
        "db_pool_waiting",
        "strata_build_info",
    ] {
        assert!(
            exported.series.contains(series),
            "{series} missing from {:?}",
            exported.series
        );
    }
    assert_eq!(
        exported.described.get("http_request_duration_seconds"),
        Some(&Kind::Histogram)
    );
    assert!(
        !exported.series.contains("up"),
        "up is Prometheus', not Strata's"
    );
}
