//! The contract test: schemathesis, a property-based API tester, generates requests from the
//! served OpenAPI document and runs every check it has: it fails on any 5xx, any response that
//! breaks the document (an undocumented status, content type or header, or a body that does not
//! match its schema), a request the document calls invalid that the API accepts or one it calls
//! valid that the API refuses, a 405 without `Allow`, and the checks that span requests (a deleted
//! resource still served, a credential ignored). `xtask/schemathesis.toml` names the few refusals
//! that depend on server state no schema can state (a cursor the server signed, a plan on offer),
//! and why.
//!
//! It runs against a real `strata serve` on a fresh database, authenticated as an admin so that
//! every operation is reachable. Schemathesis lives in a virtualenv under `target/xtask/`, created
//! on first use with a pinned version.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use tokio::process::Command;

use crate::client;
use crate::database;
use crate::process::{self, Shutdown, Signal, Supervised};
use crate::stack::{PRIVATE_KNOB, Stack};
use crate::system;

/// The schemathesis release the contract test is pinned to.
const VERSION: &str = "4.32.5";
const DATABASE: &str = "strata_contract";
const EMAIL: &str = "contract@strata.test";
const PASSWORD: &str = "contract-test-password";
const JWT_SECRET: &str = "contract-test-secret-contract-test-secret";
/// Requests generated per operation and phase: enough to find shape bugs, short enough for CI.
const MAX_EXAMPLES: &str = "30";

/// Runs schemathesis against a live server; fails on any 5xx or schema violation.
pub async fn run(stack: &Stack, shutdown: &Shutdown) -> anyhow::Result<()> {
    let st = install(shutdown).await?;
    let database_url = database::recreate(stack, DATABASE).await?;
    let port = system::free_port(18_500)?;
    let strata = strata_binary()?;
    let environment = |command: &mut Command| {
        command
            .env("DATABASE_URL", &database_url)
            .env("REDIS_URL", stack.redis_url())
            .env(
                "STRATA_REDIS_PREFIX",
                format!("contract:{}:", std::process::id()),
            )
            .env("STRATA_JWT_SECRET", JWT_SECRET)
            .env("STRATA_ENV", "test")
            .env("STRATA_LOG", "warn")
            .env("STRATA_PORT", port.to_string())
            // Nothing here scrapes; any free port keeps the fixed default free.
            .env("STRATA_METRICS_PORT", "0")
            .env("STRATA_HOST", "127.0.0.1")
            .env("STRATA_SHUTDOWN_GRACE_SECS", "0")
            // The generator sends thousands of requests from one address.
            .env("STRATA_RATE_LIMIT_ENABLED", "false")
            .env("STRATA_ARGON2_MEMORY_KIB", "1024")
            .env("STRATA_ARGON2_ITERATIONS", "1")
            .env_remove(PRIVATE_KNOB);
    };
    let mut serve = Command::new(&strata);
    serve.arg("serve");
    environment(&mut serve);
    let mut server = Supervised::spawn(serve, "the API under contract test", shutdown)?;
    let outcome = async {
        client::wait_ready(port, "the API under contract test").await?;
        let mut grant = Command::new(&strata);
        grant.args(["admin", "grant", EMAIL]);
        environment(&mut grant);
        let admin = client::Admin {
            email: EMAIL,
            password: PASSWORD,
            display_name: "Contract test",
        };
        let token = client::admin_token(port, &admin, grant, shutdown).await?;
        let mut command = Command::new(&st);
        // Its example database and cache go under target/, not into the source tree.
        command.current_dir(system::state_dir());
        command
            .arg("--config-file")
            .arg(
                system::workspace_root()
                    .join("xtask")
                    .join("schemathesis.toml"),
            )
            .arg("run")
            .arg(format!("http://127.0.0.1:{port}/openapi.json"))
            .args([
                "--max-examples",
                MAX_EXAMPLES,
                "--seed",
                "42",
                // One worker: CPython 3.11 keeps the AST constructor's recursion counter in
                // interpreter-wide state, so hypothesis describing lambdas on two threads at once
                // fails at random with "AST constructor recursion depth mismatch".
                "--workers",
                "1",
                "--no-color",
                "--request-timeout",
                "15",
                // Logging out would revoke the token the run authenticates with.
                "--exclude-path",
                "/v1/auth/logout",
            ])
            .arg("--header")
            .arg(format!("Authorization: Bearer {token}"));
        eprintln!("xtask: schemathesis {VERSION} against http://127.0.0.1:{port}");
        let status = process::run(command, "schemathesis", shutdown).await?;
        if !status.success() {
            bail!("schemathesis found responses that break the OpenAPI document ({status})");
        }
        anyhow::Ok(())
    }
    .await;
    server.stop(Signal::Terminate).await;
    database::drop_named(stack, DATABASE).await?;
    outcome
}

/// The `st` program of a virtualenv under `target/xtask`, created and pinned on first use.
async fn install(shutdown: &Shutdown) -> anyhow::Result<PathBuf> {
    let venv = system::state_dir().join("schemathesis-venv");
    let st = venv.join("bin").join("st");
    let stamp = venv.join(format!("installed-{VERSION}"));
    if st.is_file() && stamp.is_file() {
        return Ok(st);
    }
    let python = python_with_venv().await?;
    eprintln!(
        "xtask: creating a virtualenv for schemathesis {VERSION} in {}",
        venv.display()
    );
    let mut create = Command::new(&python);
    // --clear: an attempt cut short (or made without ensurepip) leaves a virtualenv without pip.
    create.args(["-m", "venv", "--clear"]).arg(&venv);
    check(
        process::run(create, "python3 -m venv", shutdown).await?,
        "python3 -m venv",
    )?;
    let mut pip = Command::new(venv.join("bin").join("pip"));
    pip.args(["install", "--quiet", "--disable-pip-version-check"])
        .arg(format!("schemathesis=={VERSION}"));
    check(
        process::run(pip, "pip install", shutdown).await?,
        "pip install schemathesis",
    )?;
    std::fs::write(&stamp, VERSION).context("recording the schemathesis install")?;
    Ok(st)
}

/// The distribution's package that gives its python3 `venv` with pip (Debian splits `ensurepip`
/// off into it).
const VENV_PACKAGE: &str = "python3-venv";
const VENV_HINT: &str = "the contract test needs Python 3.9+ with venv and pip: \
     `sudo apt-get install python3-venv` (Debian/Ubuntu), `sudo dnf install python3` (Fedora) or \
     `brew install python` (macOS)";

/// What has to happen before python3 can make the contract test's virtualenv.
#[derive(Debug, PartialEq, Eq)]
enum VenvPlan {
    /// python3 makes virtualenvs with pip as it is.
    Ready,
    /// apt-get can install the distribution's python3-venv (and python3 with it).
    Install,
    /// We cannot mend it; the user has to (what to install, said).
    Tell(String),
}

/// The plan for `python3` (none when not on PATH), given whether it can make a virtualenv with
/// pip, whether it is the distribution's own (which is all apt's package mends: not pyenv's, say)
/// and whether we can install packages.
fn venv_plan(
    python: Option<&Path>,
    makes_venvs: bool,
    from_distribution: bool,
    can_apt: bool,
) -> VenvPlan {
    match python {
        Some(_) if makes_venvs => VenvPlan::Ready,
        Some(_) if from_distribution && can_apt => VenvPlan::Install,
        None if can_apt => VenvPlan::Install,
        Some(python) => VenvPlan::Tell(format!(
            "{} cannot make a virtualenv with pip (no venv or ensurepip module); {VENV_HINT}",
            python.display()
        )),
        None => VenvPlan::Tell(format!("python3 not found; {VENV_HINT}")),
    }
}

/// python3, once it can make a virtualenv with pip; installs python3-venv where it can.
async fn python_with_venv() -> anyhow::Result<PathBuf> {
    let look = || {
        let python = system::find_program("python3");
        let makes_venvs = python.as_ref().is_some_and(|python| makes_venvs(python));
        let from_distribution = python.as_ref().is_some_and(|python| {
            std::fs::canonicalize(python).is_ok_and(|real| real.starts_with("/usr/bin"))
        });
        (python, makes_venvs, from_distribution)
    };
    let (python, makes, from_distribution) = look();
    match venv_plan(
        python.as_deref(),
        makes,
        from_distribution,
        system::can_apt_install(),
    ) {
        VenvPlan::Ready => python.context("python3 vanished"),
        VenvPlan::Tell(what) => bail!(what),
        VenvPlan::Install => {
            eprintln!(
                "xtask: python3 cannot make a virtualenv with pip; installing {VENV_PACKAGE} with \
                 apt-get"
            );
            system::apt_install(VENV_PACKAGE).await?;
            match look() {
                (Some(python), true, _) => Ok(python),
                _ => bail!(
                    "apt-get installed {VENV_PACKAGE} but python3 still cannot make a virtualenv \
                     with pip; {VENV_HINT}"
                ),
            }
        }
    }
}

/// Whether `python` has the modules `python -m venv` needs to install pip.
fn makes_venvs(python: &Path) -> bool {
    system::succeeds(python.as_os_str(), ["-c", "import venv, ensurepip"])
}

fn check(status: std::process::ExitStatus, what: &str) -> anyhow::Result<()> {
    if status.success() {
        Ok(())
    } else {
        bail!("{what} failed ({status})")
    }
}

/// The `strata` binary the test step built.
fn strata_binary() -> anyhow::Result<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| system::workspace_root().join("target"), PathBuf::from);
    let binary = target.join("debug").join("strata");
    if !binary.is_file() {
        bail!(
            "{} is missing: build it with `cargo build -p strata-server`",
            binary.display()
        );
    }
    Ok(binary)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn python3_without_venv_is_mended_with_apt_only_where_apt_can_mend_it() {
        let system_python = Path::new("/usr/bin/python3");
        let pyenv_python = Path::new("/home/dev/.pyenv/shims/python3");
        assert_eq!(
            venv_plan(Some(system_python), true, true, false),
            VenvPlan::Ready
        );
        assert_eq!(
            venv_plan(Some(pyenv_python), true, false, true),
            VenvPlan::Ready
        );
        // Debian without python3-venv, as root: install it.
        assert_eq!(
            venv_plan(Some(system_python), false, true, true),
            VenvPlan::Install
        );
        assert_eq!(venv_plan(None, false, false, true), VenvPlan::Install);
        // Not root, or a python3 apt's package would not mend: say what to install.
        let VenvPlan::Tell(what) = venv_plan(Some(system_python), false, true, false) else {
            panic!("expected advice");
        };
        assert!(
            what.starts_with("/usr/bin/python3 cannot make a virtualenv"),
            "{what}"
        );
        assert!(what.contains("sudo apt-get install python3-venv"), "{what}");
        assert!(matches!(
            venv_plan(Some(pyenv_python), false, false, true),
            VenvPlan::Tell(_)
        ));
        let VenvPlan::Tell(what) = venv_plan(None, false, false, false) else {
            panic!("expected advice");
        };
        assert!(what.starts_with("python3 not found"), "{what}");
    }

    #[test]
    fn a_python3_is_judged_by_whether_it_can_import_ensurepip() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("xtask-python-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // Debian's python3 without python3-venv: venv imports, ensurepip does not.
        let debian = dir.join("python3-without-venv");
        std::fs::write(
            &debian,
            "#!/bin/sh\ncase \"$2\" in *ensurepip*) echo \"ModuleNotFoundError: No module named \
             'ensurepip'\" >&2; exit 1;; esac\nexit 0\n",
        )
        .unwrap();
        let complete = dir.join("python3-with-venv");
        std::fs::write(&complete, "#!/bin/sh\nexit 0\n").unwrap();
        for script in [&debian, &complete] {
            std::fs::set_permissions(script, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let (without, with) = (makes_venvs(&debian), makes_venvs(&complete));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(!without);
        assert!(with);
    }

    /// The operation ids of the exception whose comment starts with `comment`.
    fn excepted(config: &str, comment: &str) -> BTreeSet<String> {
        let block = config
            .split("[[operations]]")
            .find(|block| block.trim_start().starts_with(comment))
            .unwrap_or_else(|| panic!("no exception for {comment}"));
        let list = block
            .split("include-operation-id = [")
            .nth(1)
            .and_then(|rest| rest.split(']').next())
            .expect("an id list");
        list.split(',')
            .map(|id| id.trim().trim_matches('"').to_owned())
            .filter(|id| !id.is_empty())
            .collect()
    }

    #[test]
    fn every_list_that_takes_a_cursor_has_its_signed_cursor_exception() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let config = std::fs::read_to_string(root.join("schemathesis.toml")).expect("config");
        let document: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(root.join("../docs/openapi.json")).expect("document"),
        )
        .expect("json");
        let mut with_cursor = BTreeSet::new();
        for item in document["paths"].as_object().expect("paths").values() {
            for operation in item.as_object().expect("path item").values() {
                let takes_cursor = operation["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|p| p["name"] == "cursor" && p["in"] == "query");
                if takes_cursor {
                    with_cursor.insert(
                        operation["operationId"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                    );
                }
            }
        }
        assert_eq!(
            excepted(&config, "# `cursor` must be"),
            with_cursor,
            "schemathesis sends made-up cursors to every list: list each operation that takes one"
        );
    }
}
