/* Benchmark builds only (tools/bench_xdp.py). BPF_PROG_TEST_RUN with repeat
 * runs the program again on its own output, whose MACs the previous run
 * rewrote; this prologue puts the original destination and source MACs back
 * first, so every iteration measures the path it claims. The baselines in the
 * benchmark pay the same prologue. */
#ifndef LVSXDP_BENCH_H
#define LVSXDP_BENCH_H

static __always_inline void bench_restore(void *data, void *data_end)
{
	if (data + 12 > data_end)
		return;
	*(u64 *)data = BENCH_ETH_W0;
	*(u32 *)(data + 8) = BENCH_ETH_W1;
}

#endif
