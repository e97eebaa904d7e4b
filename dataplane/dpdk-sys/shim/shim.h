/* hac-dpdk-sys: the DPDK headers bindgen reads, and the C shim that exports DPDK's
 * static-inline fast path (which bindgen cannot bind) as real functions. */
#ifndef HAC_DPDK_SHIM_H
#define HAC_DPDK_SHIM_H

#include <stdint.h>
#include <rte_config.h>
#include <rte_common.h>
#include <rte_errno.h>
#include <rte_eal.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_dev.h>
#include <rte_ethdev.h>
#include <rte_ether.h>
#include <rte_mempool.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

/* Mirrors of constants bindgen cannot evaluate (macros with casts or expressions). */
extern const uint64_t HAC_RTE_ETH_RSS_IP;
extern const uint64_t HAC_RTE_ETH_RSS_TCP;
extern const uint64_t HAC_RTE_ETH_RSS_UDP;
extern const uint32_t HAC_RTE_LCORE_ID_ANY;
extern const int HAC_RTE_SOCKET_ID_ANY;
extern const uint16_t HAC_RTE_PKTMBUF_HEADROOM;
extern const uint16_t HAC_RTE_MBUF_DEFAULT_BUF_SIZE;

/* errno and lcore */
int hac_rte_errno(void);
void hac_rte_errno_set(int value);
unsigned int hac_rte_lcore_id(void);

/* ethdev fast path */
uint16_t hac_rte_eth_rx_burst(uint16_t port_id, uint16_t queue_id,
			      struct rte_mbuf **rx_pkts, uint16_t nb_pkts);
uint16_t hac_rte_eth_tx_burst(uint16_t port_id, uint16_t queue_id,
			      struct rte_mbuf **tx_pkts, uint16_t nb_pkts);

/* mbuf allocation */
struct rte_mbuf *hac_rte_pktmbuf_alloc(struct rte_mempool *mp);
int hac_rte_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs,
			       unsigned int count);
void hac_rte_pktmbuf_free(struct rte_mbuf *m);
void hac_rte_pktmbuf_free_bulk(struct rte_mbuf **mbufs, unsigned int count);

/* mbuf accessors (first segment) */
void *hac_rte_pktmbuf_mtod(const struct rte_mbuf *m);
uint16_t hac_rte_pktmbuf_data_len(const struct rte_mbuf *m);
uint32_t hac_rte_pktmbuf_pkt_len(const struct rte_mbuf *m);
void hac_rte_pktmbuf_set_data_len(struct rte_mbuf *m, uint16_t len);
void hac_rte_pktmbuf_set_pkt_len(struct rte_mbuf *m, uint32_t len);
uint16_t hac_rte_pktmbuf_nb_segs(const struct rte_mbuf *m);
uint16_t hac_rte_pktmbuf_headroom(const struct rte_mbuf *m);
uint16_t hac_rte_pktmbuf_tailroom(const struct rte_mbuf *m);
uint16_t hac_rte_pktmbuf_buf_len(const struct rte_mbuf *m);
uint16_t hac_rte_pktmbuf_data_off(const struct rte_mbuf *m);
char *hac_rte_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len);
char *hac_rte_pktmbuf_adj(struct rte_mbuf *m, uint16_t len);
char *hac_rte_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
int hac_rte_pktmbuf_trim(struct rte_mbuf *m, uint16_t len);
int hac_rte_pktmbuf_linearize(struct rte_mbuf *m);
uint16_t hac_rte_mbuf_port(const struct rte_mbuf *m);
uint64_t hac_rte_mbuf_ol_flags(const struct rte_mbuf *m);
uint32_t hac_rte_mbuf_rss_hash(const struct rte_mbuf *m);
struct rte_mempool *hac_rte_mbuf_pool(const struct rte_mbuf *m);

/* reference counts */
uint16_t hac_rte_mbuf_refcnt_read(const struct rte_mbuf *m);
uint16_t hac_rte_mbuf_refcnt_read_acquire(const struct rte_mbuf *m);
uint16_t hac_rte_mbuf_refcnt_update(struct rte_mbuf *m, int16_t value);
/* Non-zero when the caller's handle is the only reference to the mbuf's data:
 * refcnt 1 (read with acquire ordering), direct, no external buffer. */
int hac_rte_mbuf_is_exclusive(const struct rte_mbuf *m);
/* A private single-segment copy of `m` from m's pool with the same data offset
 * (same headroom) and the same rx metadata; NULL when the pool is empty or `m` is
 * multi-segment. */
struct rte_mbuf *hac_rte_pktmbuf_copy_same_layout(const struct rte_mbuf *m);

/* mempool */
struct rte_mempool *hac_rte_pktmbuf_pool_create(const char *name, unsigned int n,
						unsigned int cache_size, uint16_t data_room_size,
						int socket_id);

#endif
