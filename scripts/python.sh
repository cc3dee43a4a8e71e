# Sourced by setup.sh and test.sh: find_python X.Y prints a command that runs Python X.Y
# (python3.X on PATH if it really runs — a pyenv shim for a version that is not active
# does not — else pyenv's own copy of it), or fails.
find_python() {
    local v=$1 c
    if "python$v" -c '' 2>/dev/null; then echo "python$v"; return 0; fi
    if command -v pyenv >/dev/null; then
        for c in "$(pyenv root)"/versions/"$v".*/bin/"python$v"; do
            if [ -x "$c" ] && "$c" -c '' 2>/dev/null; then echo "$c"; return 0; fi
        done
    fi
    return 1
}
