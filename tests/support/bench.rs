//! Small helpers the benchmarks share: arguments and a process's memory.

/// The value after `name` on the command line, or `default`.
pub fn argument(name: &str, default: &str) -> String {
    let arguments: Vec<String> = std::env::args().collect();
    arguments
        .iter()
        .position(|argument| argument == name)
        .and_then(|index| arguments.get(index + 1))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

/// A numeric argument; a value that is not a number stops the benchmark.
pub fn number(name: &str, default: usize) -> usize {
    let value = argument(name, &default.to_string());
    value
        .parse()
        .unwrap_or_else(|_| panic!("{name} takes a whole number, not {value:?}"))
}

/// `VmRSS` and `VmHWM` (peak) of a live process, in MiB.
pub fn memory_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|kib| kib.parse::<f64>().ok())
            .map_or(f64::NAN, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
