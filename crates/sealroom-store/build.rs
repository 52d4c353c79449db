//! Rebuild when a migration changes: `sqlx::migrate!` embeds the migration
//! files at compile time but does not tell Cargo to watch them.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
