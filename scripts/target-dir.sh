# Sourced, from the repository's root, by scripts/test.sh and scripts/bench.sh: the one target
# folder that they and `cargo run -p silt -- demo` (the README's first command) build into, so
# that the README's two commands build silt once, in either order:
#   - CARGO_TARGET_DIR when it is set;
#   - ./target when it is a folder (`cargo run` came first and built there);
#   - else $HOME/.cache/silt-target, outside the clone, so that CI's fresh clones keep their
#     builds (TOOLCHAIN.md), with ./target made a link to it for `cargo run` (.gitignore'd).
if [ -z "${CARGO_TARGET_DIR:-}" ]; then
  if [ -d target ] && [ ! -L target ]; then
    CARGO_TARGET_DIR=$PWD/target
  else
    CARGO_TARGET_DIR=$HOME/.cache/silt-target
    mkdir -p "$CARGO_TARGET_DIR"
    if [ ! -e target ] && [ ! -L target ]; then
      ln -s "$CARGO_TARGET_DIR" target
    fi
  fi
fi
export CARGO_TARGET_DIR
