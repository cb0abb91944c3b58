//! `cargo xtask openapi`: writes the OpenAPI document generated from the code to
//! `docs/openapi.json`; with `--check`, fails when the committed file differs from it.

use std::path::PathBuf;

use anyhow::{Context, bail};

use crate::system;

/// Where the document is committed.
pub fn path() -> PathBuf {
    system::workspace_root().join("docs").join("openapi.json")
}

/// The document as committed: pretty-printed JSON with a trailing newline.
pub fn generate() -> anyhow::Result<String> {
    strata_http::docs::to_pretty_json(&strata_http::document())
        .context("serialising the OpenAPI document")
}

/// Writes the document, or (`check`) compares it with the committed one.
pub fn run(check: bool) -> anyhow::Result<()> {
    let path = path();
    let generated = generate()?;
    let committed = match std::fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => {
            return Err(error).with_context(|| format!("reading {}", path.display()));
        }
    };
    if check {
        return match committed {
            Some(committed) if committed == generated => {
                println!("{} is up to date", path.display());
                Ok(())
            }
            Some(_) => bail!(
                "{} is stale: the code describes another API; run `cargo xtask openapi` and \
                 commit the result",
                path.display()
            ),
            None => bail!(
                "{} is missing; run `cargo xtask openapi` and commit the result",
                path.display()
            ),
        };
    }
    if committed.as_deref() == Some(generated.as_str()) {
        println!(
            "{} is up to date ({} bytes)",
            path.display(),
            generated.len()
        );
        return Ok(());
    }
    std::fs::write(&path, &generated).with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {} ({} bytes)", path.display(), generated.len());
    Ok(())
}
