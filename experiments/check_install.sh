#!/usr/bin/env bash
# The library's dependency split after a real install: a new venv, `pip install .` with no
# extras (pip resolves jax, numpy, scipy and tqdm only), then tests/core/install_check.py, which
# also blocks every optional package. Slow (it downloads jax): not part of `make test`.
#   experiments/check_install.sh [python]      # default python3; needs network or a pip cache
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${1:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PYTHON" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q --upgrade pip
# copy the tree so the build does not write into the checkout (build/, *.egg-info)
mkdir "$tmp/src" && git ls-files -z | xargs -0 cp --parents -t "$tmp/src"
"$tmp/venv/bin/python" -m pip install -q "$tmp/src"
installed=$("$tmp/venv/bin/python" -m pip list --format=freeze | cut -d= -f1 | tr 'A-Z_' 'a-z-' | sort)
echo "installed: $(echo $installed)"
for pkg in flax optax orbax-checkpoint equinox dm-haiku matplotlib scikit-image tensorflow \
           tensorflow-datasets mnist1d h5py pillow; do
  if grep -qx "$pkg" <<<"$installed"; then echo "FAIL: pip install . pulled in $pkg"; exit 1; fi
done
# run from outside the source tree so that `import xai_jax` is the installed copy
(cd "$tmp" && "$tmp/venv/bin/python" "$OLDPWD/tests/core/install_check.py")
