#!/usr/bin/env python3
"""Scans every log the test run kept for secrets and personal data.

The product must never write a secret (keys, tokens, passwords, private keys) or an email
address into a log line. The tests use realistic secrets and emails on purpose; this scan
runs over the logs of every process the suite started (SIGNUP_TEST_LOG_DIR) and over the
test command's own output, and fails the run if any leaked.
"""
import pathlib
import re
import sys

PATTERNS = {
    "email address": re.compile(r"(?<![\w.*+-])[A-Za-z0-9._%+-]*[A-Za-z0-9_%+-]@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
    "JWT": re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}"),
    "Stripe key": re.compile(r"\b[sr]k_(test|live)_[A-Za-z0-9]{8,}"),
    "Mailchimp key": re.compile(r"\b[0-9a-f]{32}-us[0-9]{1,2}\b"),
    "private key": re.compile(r"BEGIN (RSA |EC )?PRIVATE KEY"),
    "SAS signature": re.compile(r"[?&]sig=(?!REDACTED|\*)[A-Za-z0-9%+/=]{8,}"),
    "password in a URL": re.compile(r"://[^/\s:@]+:[^/\s@*]{3,}@"),
    "function key": re.compile(r"[?&]code=(?!\*\*\*)[A-Za-z0-9_%=-]{8,}"),
    "account key": re.compile(r"AccountKey=(?!Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==)[A-Za-z0-9+/=]{20,}"),
}
# Masked emails (j***@contoso.com) are the product's deliberate form.
MASKED = re.compile(r"^[^@\s]\*\*\*@")


def scan(path: pathlib.Path) -> list[str]:
    findings = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        for kind, pattern in PATTERNS.items():
            for match in pattern.finditer(line):
                if kind == "email address" and MASKED.match(match.group(0)):
                    continue
                findings.append(f"{path}:{number}: {kind}: {line.strip()[:200]}")
    return findings


def main() -> int:
    paths = []
    for argument in sys.argv[1:]:
        root = pathlib.Path(argument)
        if root.is_dir():
            paths.extend(sorted(p for p in root.rglob("*") if p.is_file()))
        elif root.is_file():
            paths.append(root)
    findings = [finding for path in paths for finding in scan(path)]
    for finding in findings:
        print(finding)
    print(f"==> leak scan: {len(paths)} log files, {len(findings)} findings")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
