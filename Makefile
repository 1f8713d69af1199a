# AliasOS — the two commands are `make run` and `make test`; both set up what is missing.
#
#   make run   [UEFI=1] [MACHINE=q35|pc] [MEM=512M] [KVM=1] [DISK="a.img b.img"] [BUS=virtio|ahci|nvme]
#              [HEADLESS=1] [GDB=1] [CMDLINE="..."]
#                              build the image, make target/data.img, boot to the shell
#   make test                  host unit tests + kernel tests in QEMU (cargo test --workspace)
#   make image                 target/aliasos-bios.img and target/aliasos-uefi.img, each with
#                              target/initramfs.cpio (the user tools, rebuilt when they change)
#   make initramfs             just target/initramfs.cpio
#   make data-disk             just target/data.img (rebuilt when tools/data-disk.sh changes)
#   make gdb                   attach gdb to a `make run GDB=1`
#   make usb DEV=/dev/sdX      write the UEFI image (BIOS=1: the BIOS image) to a USB stick
#   make lint                  clippy -D warnings and rustfmt --check
#   make deps                  install QEMU, OVMF, e2fsprogs and the pinned Rust toolchain
#   make bench-blk [BENCH_ARGS="--bus virtio --runtime 5 ..."]
#                              block workloads on AliasOS and on a Linux guest in the same QEMU;
#                              table in target/bench-blk.md (`make bench` runs every benchmark)
#   make bench-files [BENCH_ARGS="--bus virtio --runs 3 ..."]
#                              buffered file I/O from user space (fbench), AliasOS vs Linux;
#                              target/bench-files.md and target/bench-files.svg
#   make soak                  fsxa (model-based random file test) over 32 seeds
#   make bench-copy            the copies alone (sendfile, copy_file_range, cp, read/write,
#                              and on NVMe the disk's own Copy: AliasOS's copy_file_range vs
#                              Linux's passthrough Copy commands) on virtio, AHCI and NVMe,
#                              with the bytes the CPU copied per MiB, AliasOS vs Linux;
#                              then copies between two disks (virtio to AHCI, to NVMe)
#   make bench-direct          O_DIRECT and AIO (fio-like workloads) on a file and a raw disk,
#                              AliasOS vs Linux; target/bench-direct.md
#   make profile [BENCH_ARGS="--bus virtio ..."]
#                              the bench-files workload on AliasOS with the sampling profiler:
#                              flat top 30 and flame graph in target/bench-files/profile-*

SHELL := /bin/bash
CARGO ?= cargo
MACHINE ?= q35
MEM ?= 512M
BUS ?= virtio
DATA_DISK := target/data.img

BOOT := $(CARGO) run -q -p boot --

RUN_FLAGS := --machine $(MACHINE) --mem $(MEM)
ifeq ($(UEFI),1)
RUN_FLAGS += --uefi
endif
ifeq ($(KVM),1)
RUN_FLAGS += --kvm
endif
ifeq ($(HEADLESS),1)
RUN_FLAGS += --headless
endif
ifeq ($(GDB),1)
RUN_FLAGS += --gdb
endif
ifneq ($(CMDLINE),)
RUN_FLAGS += --cmdline "$(CMDLINE)"
endif
# DISK may list several images (spaces or commas); each may carry its own bus as path:bus.
comma := ,
ifeq ($(DISK),)
RUN_DISKS := --disk $(DATA_DISK):$(BUS)
else
RUN_DISKS := $(foreach d,$(subst $(comma), ,$(DISK)),--disk $(if $(findstring :,$(d)),$(d),$(d):$(BUS)))
endif

# The benchmarks share target/bench-files (base image, run images, logs): one at a time,
# even under `make -j`.
.NOTPARALLEL:

.PHONY: all deps toolchain image initramfs run test lint gdb usb clean data-disk bench bench-blk bench-files bench-copy bench-direct soak profile

all: image

deps:
	@bash tools/deps.sh

toolchain:
	@rustup toolchain install >/dev/null

# `boot image` always runs `cargo build -p user-tools --release` (a no-op when nothing
# changed) and repacks the initramfs, so no file dependencies are needed here.
image: deps
	$(BOOT) image

initramfs: deps
	$(BOOT) initramfs

$(DATA_DISK): tools/data-disk.sh
	@bash tools/data-disk.sh $(DATA_DISK)

data-disk: deps $(DATA_DISK)

# Builds the image it boots (kernel + initramfs) first; the shell comes up on the serial
# console (this terminal) and on the QEMU window.
run: deps $(if $(DISK),,$(DATA_DISK))
	$(BOOT) run $(RUN_FLAGS) $(RUN_DISKS)

test: deps
	@bash tools/test-summary.sh $(CARGO) test --workspace --no-fail-fast

lint: deps
	$(BOOT) modgraph kernel/src >/dev/null
	$(CARGO) clippy --workspace -- -D warnings
	$(CARGO) clippy -p mm -p drivers -p fs -p tests -p bench --all-targets -- -D warnings
	$(CARGO) fmt --all -- --check

gdb:
	@command -v gdb >/dev/null || (apt-get update -qq && apt-get install -y -qq gdb)
	gdb -q -ex "symbol-file $$($(BOOT) kernel-elf) -o 0xffff800000000000" \
	    -ex "target remote localhost:1234" \
	    -ex "echo Kernel symbols loaded; 'continue' boots.\n"

usb: deps
ifeq ($(DEV),)
	@echo "usage: make usb DEV=/dev/sdX   (the whole stick, not a partition; BIOS=1 for legacy BIOS PCs)"; exit 2
else
	$(BOOT) usb $(DEV) $(if $(filter 1,$(BIOS)),--bios)
endif

# Long random runs that do not fit in `make test`: fsxa over 32 seeds of 50,000
# operations (FSXA_SEEDS=first-last, FSXA_OPS=n to change; FSXA_BUS=ahci or nvme for
# another disk than virtio-blk).
soak: deps
	FSXA_SEEDS=$${FSXA_SEEDS:-1-32} FSXA_OPS=$${FSXA_OPS:-50000} $(CARGO) test -p tests --test userland fsxa -- --nocapture

bench: bench-blk bench-files bench-direct bench-copy

bench-blk: deps
	$(CARGO) run -q -p bench --bin bench-blk -- $(BENCH_ARGS)

bench-files: deps
	$(CARGO) run -q -p bench --bin bench-files -- $(BENCH_ARGS)

# The copies alone: sendfile, copy_file_range (by the disk where it copies, and through the
# page cache), the disk's own Copy, cp and a read/write loop, with the bytes the CPU
# copied per MiB (target/bench-copy.md); then copies between two disks, virtio to AHCI
# and virtio to NVMe (target/bench-xdisk-ahci.md, bench-xdisk-nvme.md).
bench-copy: deps
	$(CARGO) run -q -p bench --bin bench-files -- --name bench-copy --bus virtio,ahci,nvme --workloads copy_sendfile,copy_cfr,copy_cfr_cache,copy_device,copy_cp,copy_rw $(BENCH_ARGS)
	$(CARGO) run -q -p bench --bin bench-files -- --bus virtio --target-bus ahci $(BENCH_ARGS)
	$(CARGO) run -q -p bench --bin bench-files -- --bus virtio --target-bus nvme $(BENCH_ARGS)

# Direct I/O from user space: O_DIRECT and Linux AIO on a preallocated ext2 file and on a
# raw disk, beside the Linux peer (into target/bench-direct.md).
bench-direct: deps
	$(CARGO) run -q -p bench --bin bench-files -- --direct $(BENCH_ARGS)

profile: deps
	$(CARGO) run -q -p bench --bin bench-files -- --no-linux --profile --bus virtio --runs 1 $(BENCH_ARGS)

clean:
	$(CARGO) clean
