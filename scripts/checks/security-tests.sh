#!/usr/bin/env bash
# Every test that docs/security.md names must exist as a test: a function
# marked #[test] / #[tokio::test] / #[actix_web::test] (or a proptest), a case of the store
# conformance suite (listed in a `case_list!`), or a scenario of the framework scenario suite
# (listed in `framework_scenarios!`, which every framework integration runs).
set -euo pipefail
cd "$(dirname "$0")/../.."

names=$(grep -oE '\[`test: [A-Za-z0-9_]+`\]' docs/security.md | sed -E 's/\[`test: ([A-Za-z0-9_]+)`\]/\1/' | sort -u)
if [[ -z "$names" ]]; then
  echo "docs/security.md names no tests" >&2
  exit 1
fi
missing=0
count=0
for name in $names; do
  count=$((count + 1))
  # A test function: the attribute within the five lines before `fn name`.
  if grep -rn --include='*.rs' -B5 -E "^\s*(pub\s+)?(async\s+)?fn ${name}\s*[(<]" crates fuzz 2>/dev/null \
      | grep -qE '#\[((tokio|actix_web)::)?test|#\[test\]|proptest!'; then
    continue
  fi
  # A proptest function inside a proptest! block.
  if grep -rn --include='*.rs' -E "^\s*fn ${name}\s*\(.* in " crates 2>/dev/null | grep -q .; then
    continue
  fi
  # A conformance case: defined as an async fn and listed in a case_list!.
  if grep -rqE "^\s*async fn ${name}\(" crates/tessera-core/src/testkit \
      && grep -rqE "^\s*${name},$" crates/tessera-core/src/testkit; then
    continue
  fi
  # A framework scenario: an async fn of tessera-web's testkit listed in framework_scenarios!.
  if grep -rqE "^\s*pub async fn ${name}<" crates/tessera-web/src/testkit \
      && grep -qE "^\s*${name},$" crates/tessera-web/src/testkit/mod.rs; then
    continue
  fi
  # A browser scenario: an async fn expanded into a test per mode by in_both_modes!.
  if file=$(grep -rlE "^\s*async fn ${name}\(" crates --include='*.rs' 2>/dev/null | head -1) \
      && [[ -n "$file" ]] && grep -q 'in_both_modes!' "$file" && grep -qE "^\s*${name},$" "$file"; then
    continue
  fi
  # A test with its own harness (harness = false) reporting under this name.
  if grep -rqE "const NAME: &str = \"${name}\";" crates --include='*.rs'; then
    continue
  fi
  echo "docs/security.md names test \`${name}\`, which does not exist" >&2
  missing=$((missing + 1))
done
if [[ $missing -gt 0 ]]; then
  echo "$missing of $count named tests are missing" >&2
  exit 1
fi
echo "all $count tests named in docs/security.md exist"
