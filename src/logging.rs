//! Process logging: `log` + `env_logger`, filtered by `RUST_LOG` (default `info`).
//!
//! The Functions host logs every stdout line at Information and every stderr line at
//! Error, so errors go to stderr and everything else to stdout: the host's levels then
//! match ours and Application Insights can alert on real errors only.

use log::{Level, Log, Metadata, Record};

struct SplitLogger {
    stdout: env_logger::Logger,
    stderr: env_logger::Logger,
}

impl Log for SplitLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        self.stdout.enabled(metadata)
    }

    fn log(&self, record: &Record) {
        if record.level() == Level::Error {
            self.stderr.log(record);
        } else {
            self.stdout.log(record);
        }
    }

    fn flush(&self) {
        self.stdout.flush();
        self.stderr.flush();
    }
}

fn builder(target: env_logger::Target) -> env_logger::Builder {
    let mut builder = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    builder.target(target).format_timestamp_millis();
    builder
}

/// Installs the process logger once; later calls are no-ops (tests, CLI subcommands).
pub fn init() {
    let stdout = builder(env_logger::Target::Stdout).build();
    let stderr = builder(env_logger::Target::Stderr).build();
    let max_level = stdout.filter();
    if log::set_boxed_logger(Box::new(SplitLogger { stdout, stderr })).is_ok() {
        log::set_max_level(max_level);
    }
}

/// `jane.doe@contoso.com` → `j***@contoso.com`: enough to tell users apart in a support
/// case, not enough to identify one. Anything that is not an address is fully masked.
pub fn mask_email(email: &str) -> String {
    match email.trim().rsplit_once('@') {
        Some((local, domain)) if !local.is_empty() && !domain.is_empty() => {
            let first = local.chars().next().unwrap_or('*');
            format!("{first}***@{domain}")
        }
        _ => "***".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::mask_email;

    #[test]
    fn masks_the_local_part_of_an_email() {
        assert_eq!(mask_email("jane.doe@contoso.com"), "j***@contoso.com");
        assert_eq!(mask_email("not-an-email"), "***");
        assert_eq!(mask_email("@contoso.com"), "***");
    }
}
