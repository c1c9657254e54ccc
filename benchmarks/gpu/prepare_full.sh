#!/bin/bash
# prepare_full.sh — run HERE (no GPU needed): build the whole birdbone (Release, CUDA) in build-carry-build/
# and pack it with everything the GPU machine lacks into build-carry/ (ignored by git through /build*/):
#   bin/          birdbone, test_cuda_*, bench_gpu (stripped); Open MPI's orterun (also as mpirun, mpiexec),
#                 orted (forked by a singleton MPI_Init), ompi_info
#   lib.tar.xz    lib/ (every shared library ldd lists that is not glibc, the compiler runtime or CUDA's
#                 own), lib/openmpi3/ (MCA plugins), lib/pmix/ (PMIx plugins), lib/hwloc/ (hwloc_pci),
#                 share/openmpi/ + share/pmix/ (help texts), etc/ (openmpi- and pmix-mca-params.conf)
#   env.sh        source it on the device: unpacks to $BBFULL (/tmp/bbfull) and sets PATH,
#                 LD_LIBRARY_PATH, the OPAL_* / PMIX_* install-dir variables and the MCA defaults
# Then call the device tool with carry ["build-carry"] and command "bash benchmarks/gpu/run_full.sh".
# benchmarks/gpu/CARRY.md explains how it works and what was checked.
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${BB_FULL_BUILD:-build-carry-build}
C=build-carry
ML=/usr/lib/x86_64-linux-gnu                       # Debian 12 multiarch lib dir
OMPI_PKGLIB=$ML/openmpi/lib/openmpi3               # ompi_info: pkglibdir
PMIX_DIR=$ML/pmix2                                 # Debian builds Open MPI 4.1.4 against external PMIx 4.2
cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=Release >/dev/null
targets=(birdbone)
avail=$(cmake --build "$B" --target help | awk '{print $2}')
for t in bench_gpu bench_gpu_model test_cuda_smoke test_cuda_linalg test_cuda_gptq test_cuda_wanda test_cuda_sparsegpt test_cuda_forward test_cuda_comm; do
    if grep -qx "$t" <<< "$avail"; then targets+=("$t"); fi
done
cmake --build "$B" -j"${BB_JOBS:-2}" --target "${targets[@]}"

rm -rf "$C"
S=$C/stage                                         # becomes lib.tar.xz
mkdir -p "$C/bin" "$S/lib/openmpi3" "$S/lib/pmix" "$S/lib/hwloc" "$S/share/openmpi" "$S/share/pmix" "$S/etc"
cp "$B/birdbone" "$C/bin/"
for t in "${targets[@]}"; do
    f=$(find "$B" -type f -name "$t" -perm -u+x | head -1)
    if [ -n "$f" ] && [ "$t" != birdbone ]; then cp "$f" "$C/bin/"; fi
done
strip "$C"/bin/*
# Open MPI's launchers (mpirun and mpiexec are links to orterun: plain copies, carry may drop links)
cp -L /usr/bin/orterun "$C/bin/orterun"
cp -L /usr/bin/orterun "$C/bin/mpirun"
cp -L /usr/bin/orterun "$C/bin/mpiexec"
cp -L /usr/bin/orted "$C/bin/orted"
cp -L /usr/bin/ompi_info "$C/bin/ompi_info"

# MCA plugins: all but those needing a network stack the device lacks and we don't carry
# (UCX, libfabric/OFI, PSM/PSM2, verbs/openib; Debian's openmpi-mca-params.conf turns most of them off).
for f in "$OMPI_PKGLIB"/*.so; do
    case $(basename "$f") in
        *ucx*|*ofi*|*psm*|*openib*|*verbs*) continue ;;
    esac
    cp -L "$f" "$S/lib/openmpi3/"
done
cp -L "$PMIX_DIR"/lib/pmix/*.so "$S/lib/pmix/"
cp -L $ML/hwloc/hwloc_pci.so "$S/lib/hwloc/" 2>/dev/null || true
cp -rL /usr/share/openmpi/. "$S/share/openmpi/"
cp -rL "$PMIX_DIR"/share/pmix/. "$S/share/pmix/"
cp -L /etc/openmpi/openmpi-mca-params.conf /etc/openmpi/openmpi-default-hostfile "$S/etc/"
# PMIx's own params file points its component path at the system dir: drop that line (env.sh sets it)
grep -v '^mca_base_component_path' "$PMIX_DIR"/share/pmix-mca-params.conf > "$S/etc/pmix-mca-params.conf"

# Shared libraries: the closure of ldd over the executables and every carried plugin, less glibc, the
# compiler runtime and CUDA's own libraries (the device has them, matched to its driver).
for f in "$C"/bin/* "$S"/lib/openmpi3/*.so "$S"/lib/pmix/*.so "$S"/lib/hwloc/*.so; do ldd "$f"; done | awk '$3 ~ /^\// {print $3}' | sort -u |
    grep -vE '/(libc|libm|libdl|libpthread|librt|libutil|libresolv|libnsl|libanl|libstdc\+\+|libgcc_s)\.so|ld-linux|linux-vdso|/usr/local/cuda|libcudart|libcublas|libcusolver|libcusparse|libnvJitLink|libnccl|libcuda\.so' |
    while read -r l; do
        n=$(basename "$l")
        cp -L "$l" "$S/lib/$n"
        # the soname too, in case the path ldd printed is a differently named link
        so=$(readelf -d "$l" 2>/dev/null | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
        if [ -n "$so" ] && [ "$so" != "$n" ]; then cp -L "$l" "$S/lib/$so"; fi
    done
# libmpi & co. may resolve as their Debian links (libmpi.so.40 -> libmpi.so.40.30.4): make sure every
# soname a carried object asks for is present
missing=0
for f in "$C"/bin/* "$S"/lib/*.so* "$S"/lib/*/*.so; do
    for need in $(readelf -d "$f" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
        [ -e "$S/lib/$need" ] && continue
        echo "$need" | grep -qE '^(libc|libm|libdl|libpthread|librt|libutil|libresolv|libstdc\+\+|libgcc_s)\.so|^ld-linux|libcudart|libcublas|libcusolver|libcusparse|libnvJitLink|libnccl|^libcuda\.so' && continue
        echo "prepare_full: $f needs $need, not carried" >&2; missing=1
    done
done
[ $missing = 0 ] || { echo "prepare_full: missing libraries (see above)" >&2; exit 1; }
strip --strip-unneeded "$S"/lib/*.so* "$S"/lib/*/*.so 2>/dev/null || true
tar -C "$S" -cJf "$C/lib.tar.xz" .
rm -rf "$S"

cat > "$C/env.sh" <<'EOF'
# env.sh — source on the GPU machine (or anywhere): unpacks the carry to $BBFULL (default /tmp/bbfull)
# and sets PATH, LD_LIBRARY_PATH, the Open MPI / PMIx install-dir variables and the MCA defaults.
_bbc=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export BBFULL=${BBFULL:-/tmp/bbfull}
rm -rf "$BBFULL/bin" "$BBFULL/lib" "$BBFULL/share" "$BBFULL/etc" && mkdir -p "$BBFULL/bin" && tar -C "$BBFULL" -xJf "$_bbc/lib.tar.xz" &&
    cp "$_bbc"/bin/* "$BBFULL/bin/" && chmod +x "$BBFULL"/bin/* || { echo "env.sh: unpacking failed" >&2; return 1; }
# sourcing twice does not stack the paths: they are built from the values before the first time
export BBFULL_BASE_PATH=${BBFULL_BASE_PATH-$PATH} BBFULL_BASE_LD=${BBFULL_BASE_LD-${LD_LIBRARY_PATH:-}}
export PATH=$BBFULL/bin:$BBFULL_BASE_PATH
LD_LIBRARY_PATH=$BBFULL/lib${BBFULL_BASE_LD:+:$BBFULL_BASE_LD}
for _d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda/lib; do
    [ -d $_d ] && LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$_d
done
export LD_LIBRARY_PATH
if ls "$BBFULL"/bin/birdbone "$BBFULL"/bin/test_cuda_* 2>/dev/null | xargs -n1 ldd 2>/dev/null | grep -q "not found"; then
    # CUDA libraries outside the toolkit folder (PyTorch's pip wheels), as benchmarks/gpu/run.sh does
    for _d in $(find / -xdev \( -name 'libcusolver.so.12' -o -name 'libnccl.so.2' -o -name 'libcublas.so.13' \
        -o -name 'libcusparse.so.12' -o -name 'libnvJitLink.so.13' -o -name 'libcudart.so.13' \) -printf '%h\n' \
        2>/dev/null | sort -u); do LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$_d; done
    export LD_LIBRARY_PATH
fi
# Open MPI 4.1 install dirs (opal/mca/installdirs/env); Debian's sysconfdir /etc/openmpi is absolute,
# so OPAL_PREFIX alone does not move everything: set each one.
export OPAL_PREFIX=$BBFULL OPAL_EXEC_PREFIX=$BBFULL OPAL_BINDIR=$BBFULL/bin OPAL_SBINDIR=$BBFULL/bin \
    OPAL_LIBEXECDIR=$BBFULL/bin OPAL_LIBDIR=$BBFULL/lib OPAL_PKGLIBDIR=$BBFULL/lib/openmpi3 \
    OPAL_DATAROOTDIR=$BBFULL/share OPAL_DATADIR=$BBFULL/share OPAL_PKGDATADIR=$BBFULL/share/openmpi \
    OPAL_SYSCONFDIR=$BBFULL/etc OPAL_INCLUDEDIR=$BBFULL/include OPAL_PKGINCLUDEDIR=$BBFULL/include
# PMIx 4.2 (external libpmix.so.2, used through mca_pmix_ext3x): its own install-dir variables
export PMIX_PREFIX=$BBFULL PMIX_EXEC_PREFIX=$BBFULL PMIX_BINDIR=$BBFULL/bin PMIX_LIBDIR=$BBFULL/lib \
    PMIX_PKGLIBDIR=$BBFULL/lib/pmix PMIX_DATAROOTDIR=$BBFULL/share PMIX_DATADIR=$BBFULL/share \
    PMIX_PKGDATADIR=$BBFULL/share/pmix PMIX_SYSCONFDIR=$BBFULL/etc \
    PMIX_MCA_mca_base_component_path=$BBFULL/lib/pmix
export HWLOC_PLUGINS_PATH=$BBFULL/lib/hwloc
export OMPI_MCA_mca_base_component_path=$BBFULL/lib/openmpi3
# root on the device; one node, shared memory between ranks, no ssh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl=${OMPI_MCA_btl:-self,vader}
export OMPI_MCA_plm=${OMPI_MCA_plm:-isolated} OMPI_MCA_plm_rsh_agent=
# containers often forbid the cross-memory-attach syscalls vader's single copy uses
export OMPI_MCA_btl_vader_single_copy_mechanism=${OMPI_MCA_btl_vader_single_copy_mechanism:-none}
export NCCL_NVLS_ENABLE=0
unset _bbc _d
EOF
cp benchmarks/gpu/CARRY.md "$C/" 2>/dev/null || true
du -sh "$C"/*; du -sh "$C"
t=$(du -sm "$C" | cut -f1)
[ "$t" -lt 60 ] || { echo "prepare_full: carry is $t MiB, over the 60 MiB budget" >&2; exit 1; }
