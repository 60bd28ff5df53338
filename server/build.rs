//! Rebuilds the server when a migration is added: `sqlx::migrate!` embeds
//! the files of `migrations/`, but only a build script tells cargo to look
//! at the directory itself.

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
