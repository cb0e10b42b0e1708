//! `certgen DIR`: writes a private CA and the services' certificates into DIR unless they are
//! all there already (what `make run`, `make up` and `make kind-up` call before starting).

fn main() -> std::process::ExitCode {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: certgen DIR");
        return std::process::ExitCode::from(64);
    };
    let dir = std::path::PathBuf::from(dir);
    match certgen::write_missing(&dir) {
        Ok(true) => {
            eprintln!(
                "certgen: wrote a new CA and certificates for {:?} to {}",
                certgen::SERVICES,
                dir.display()
            );
            std::process::ExitCode::SUCCESS
        }
        Ok(false) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("certgen: {}: {error}", dir.display());
            std::process::ExitCode::FAILURE
        }
    }
}
