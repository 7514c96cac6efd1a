/* Benchmark builds only (tools/bench_xdp.py). BPF_PROG_TEST_RUN with repeat
 * runs the program again on its own output, whose MACs and TTL the previous
 * run rewrote; this prologue puts the original destination and source MACs
 * and the TTL (BENCH_TTL, with its checksum, RFC 1624) back first, so every
 * iteration measures the path it claims. The benchmark's frames are untagged
 * IPv4. The baselines in the benchmark pay the same prologue. */
#ifndef LVSXDP_BENCH_H
#define LVSXDP_BENCH_H

static __always_inline void bench_restore(void *data, void *data_end)
{
	if (data + 12 > data_end)
		return;
	*(u64 *)data = BENCH_ETH_W0;
	*(u32 *)(data + 8) = BENCH_ETH_W1;
	{
		struct iphdr *ip = data + sizeof(struct ethhdr);
		u32 check;

		if ((void *)(ip + 1) > data_end || ip->ttl != BENCH_TTL - 1)
			return;
		check = (u16)~ip->check;
		check += bpf_htons(0x0100);
		check = (check & 0xffff) + (check >> 16);
		ip->check = ~check;
		ip->ttl = BENCH_TTL;
	}
}

#endif
