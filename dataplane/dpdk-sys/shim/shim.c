/* hac-dpdk-sys C shim: real symbols for DPDK's static-inline fast path. Compiled with
 * the exact flags `pkg-config --cflags libdpdk` gives (including `-include rte_config.h
 * -march=...`), so struct layouts and inline code match the installed DPDK. */
#include <string.h>
#include "shim.h"

const uint64_t HAC_RTE_ETH_RSS_IP = RTE_ETH_RSS_IP;
const uint64_t HAC_RTE_ETH_RSS_TCP = RTE_ETH_RSS_TCP;
const uint64_t HAC_RTE_ETH_RSS_UDP = RTE_ETH_RSS_UDP;
const uint32_t HAC_RTE_LCORE_ID_ANY = LCORE_ID_ANY;
const int HAC_RTE_SOCKET_ID_ANY = SOCKET_ID_ANY;
const uint16_t HAC_RTE_PKTMBUF_HEADROOM = RTE_PKTMBUF_HEADROOM;
const uint16_t HAC_RTE_MBUF_DEFAULT_BUF_SIZE = RTE_MBUF_DEFAULT_BUF_SIZE;

int hac_rte_errno(void) { return rte_errno; }
void hac_rte_errno_set(int value) { rte_errno = value; }
unsigned int hac_rte_lcore_id(void) { return rte_lcore_id(); }

uint16_t hac_rte_eth_rx_burst(uint16_t port_id, uint16_t queue_id,
			      struct rte_mbuf **rx_pkts, uint16_t nb_pkts)
{
	return rte_eth_rx_burst(port_id, queue_id, rx_pkts, nb_pkts);
}

uint16_t hac_rte_eth_tx_burst(uint16_t port_id, uint16_t queue_id,
			      struct rte_mbuf **tx_pkts, uint16_t nb_pkts)
{
	return rte_eth_tx_burst(port_id, queue_id, tx_pkts, nb_pkts);
}

struct rte_mbuf *hac_rte_pktmbuf_alloc(struct rte_mempool *mp) { return rte_pktmbuf_alloc(mp); }

int hac_rte_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs,
			       unsigned int count)
{
	return rte_pktmbuf_alloc_bulk(mp, mbufs, count);
}

void hac_rte_pktmbuf_free(struct rte_mbuf *m) { rte_pktmbuf_free(m); }

void hac_rte_pktmbuf_free_bulk(struct rte_mbuf **mbufs, unsigned int count)
{
	rte_pktmbuf_free_bulk(mbufs, count);
}

void *hac_rte_pktmbuf_mtod(const struct rte_mbuf *m) { return rte_pktmbuf_mtod(m, void *); }
uint16_t hac_rte_pktmbuf_data_len(const struct rte_mbuf *m) { return rte_pktmbuf_data_len(m); }
uint32_t hac_rte_pktmbuf_pkt_len(const struct rte_mbuf *m) { return rte_pktmbuf_pkt_len(m); }
void hac_rte_pktmbuf_set_data_len(struct rte_mbuf *m, uint16_t len) { m->data_len = len; }
void hac_rte_pktmbuf_set_pkt_len(struct rte_mbuf *m, uint32_t len) { m->pkt_len = len; }
uint16_t hac_rte_pktmbuf_nb_segs(const struct rte_mbuf *m) { return m->nb_segs; }
uint16_t hac_rte_pktmbuf_headroom(const struct rte_mbuf *m) { return rte_pktmbuf_headroom(m); }
uint16_t hac_rte_pktmbuf_tailroom(const struct rte_mbuf *m) { return rte_pktmbuf_tailroom(m); }
uint16_t hac_rte_pktmbuf_buf_len(const struct rte_mbuf *m) { return m->buf_len; }
uint16_t hac_rte_pktmbuf_data_off(const struct rte_mbuf *m) { return m->data_off; }
char *hac_rte_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_prepend(m, len); }
char *hac_rte_pktmbuf_adj(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_adj(m, len); }
char *hac_rte_pktmbuf_append(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_append(m, len); }
int hac_rte_pktmbuf_trim(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_trim(m, len); }
int hac_rte_pktmbuf_linearize(struct rte_mbuf *m) { return rte_pktmbuf_linearize(m); }
uint16_t hac_rte_mbuf_port(const struct rte_mbuf *m) { return m->port; }
uint64_t hac_rte_mbuf_ol_flags(const struct rte_mbuf *m) { return m->ol_flags; }
uint32_t hac_rte_mbuf_rss_hash(const struct rte_mbuf *m) { return m->hash.rss; }
struct rte_mempool *hac_rte_mbuf_pool(const struct rte_mbuf *m) { return m->pool; }

uint16_t hac_rte_mbuf_refcnt_read(const struct rte_mbuf *m) { return rte_mbuf_refcnt_read(m); }

uint16_t hac_rte_mbuf_refcnt_read_acquire(const struct rte_mbuf *m)
{
	return __atomic_load_n(&m->refcnt, __ATOMIC_ACQUIRE);
}

uint16_t hac_rte_mbuf_refcnt_update(struct rte_mbuf *m, int16_t value)
{
	/* Always the atomic path: rte_mbuf_refcnt_update's refcnt==1 shortcut is a
	 * plain store, fine for the sole owner, and the handle calling us is one. */
	return rte_mbuf_refcnt_update(m, value);
}

int hac_rte_mbuf_is_exclusive(const struct rte_mbuf *m)
{
	if (m->ol_flags & (RTE_MBUF_F_INDIRECT | RTE_MBUF_F_EXTERNAL))
		return 0;
	return __atomic_load_n(&m->refcnt, __ATOMIC_ACQUIRE) == 1;
}

struct rte_mbuf *hac_rte_pktmbuf_copy_same_layout(const struct rte_mbuf *m)
{
	struct rte_mbuf *c;

	if (m->nb_segs != 1)
		return NULL;
	c = rte_pktmbuf_alloc(m->pool);
	if (c == NULL)
		return NULL;
	if (c->buf_len < m->data_off + m->data_len) {
		rte_pktmbuf_free(c);
		return NULL;
	}
	c->data_off = m->data_off;
	c->data_len = m->data_len;
	c->pkt_len = m->data_len;
	c->port = m->port;
	c->ol_flags = m->ol_flags & ~(RTE_MBUF_F_INDIRECT | RTE_MBUF_F_EXTERNAL);
	c->packet_type = m->packet_type;
	c->hash = m->hash;
	c->vlan_tci = m->vlan_tci;
	c->vlan_tci_outer = m->vlan_tci_outer;
	c->tx_offload = m->tx_offload;
	memcpy(rte_pktmbuf_mtod(c, char *), rte_pktmbuf_mtod(m, const char *), m->data_len);
	return c;
}

struct rte_mempool *hac_rte_pktmbuf_pool_create(const char *name, unsigned int n,
						unsigned int cache_size, uint16_t data_room_size,
						int socket_id)
{
	return rte_pktmbuf_pool_create(name, n, cache_size, 0, data_room_size, socket_id);
}
