//! Rebuilds the crate when a migration is added or edited: `embed_migrations!` reads the
//! directory at compile time, and Cargo does not otherwise know that it depends on it.

fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
