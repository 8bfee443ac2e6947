/* synfab_udp: the LiteX sim's Ethernet PHY model (LiteEthPHYModel pads "eth") on host UDP sockets.
 *
 * No tap device: for each of `ports` SoC UDP ports (soc_port + i) the module binds a UDP socket on
 * 127.0.0.1:(host_port + i).  A datagram a host program sends to such a socket enters the SoC as an
 * Ethernet/IPv4/UDP frame from host_ip (source port: the sender's) to soc_ip:(soc_port + i); a UDP
 * frame the SoC sends from soc_port + i leaves that socket for the last host address that sent to
 * it, or to the port `peers` names for it.  ARP requests from the SoC are answered with a made-up
 * host MAC, whatever IP they ask for (so a frame to another board leaves the socket of its source
 * port: linked Ethernet sims, soc.sim.linked_sims).  Frames of the PHY model have no preamble and
 * no FCS (LiteEthPHYModel.with_preamble_crc = False); one byte per clock.
 * Args (JSON strings): host_port, soc_port, ports, soc_ip, host_ip, soc_mac (hex), peers (one
 * 127.0.0.1 UDP port per SoC port, comma-separated; 0: the last that sent to it).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include "error.h"

#include <event2/event.h>
#include <json-c/json.h>
#include "modules.h"
#include "../synfab_sim.h"

#define MAX_PORTS 4
/* Idle clocks between frames into the SoC: what a wire spends beyond the PHY model's bytes on
 * every frame (inter-frame gap 12, preamble + SFD 8, FCS 4), so a byte per clock is a wire's timing. */
#define GAP_CLOCKS 24
#define FRAME_MAX 2048

struct frame_s {
  unsigned char data[FRAME_MAX];
  size_t len;
  struct frame_s *next;
};

struct udp_port_s {
  int fd;
  int soc_port;
  struct sockaddr_in peer;
  int has_peer;
  struct event *ev;
  struct session_s *s;
};

struct session_s {
  char *tx;
  char *tx_valid;
  char *tx_ready;
  char *rx;
  char *rx_valid;
  char *rx_ready;
  char *sys_clk;
  clk_edge_state_t edge;
  unsigned char txbuf[FRAME_MAX];
  size_t txlen;
  struct frame_s *cur;
  size_t cursent;
  int gap;
  struct frame_s *head, *tail;
  struct udp_port_s ports[MAX_PORTS];
  int nports;
  unsigned char soc_mac[6];
  unsigned char host_mac[6];
  uint32_t soc_ip, host_ip;      /* network order */
  unsigned short ip_id;
};

static struct event_base *base = NULL;

static int synfab_udp_start(void *b)
{
  base = (struct event_base *)b;
  printf("[synfab_udp] loaded\n");
  return RC_OK;
}

static void enqueue(struct session_s *s, struct frame_s *f)
{
  if(f->len < 60) {
    memset(f->data + f->len, 0, 60 - f->len);
    f->len = 60;
  }
  f->next = NULL;
  if(s->tail)
    s->tail->next = f;
  else
    s->head = f;
  s->tail = f;
}

static unsigned short ip_checksum(const unsigned char *h, int n)
{
  unsigned long sum = 0;
  int i;
  for(i = 0; i < n; i += 2)
    sum += (h[i] << 8) | h[i + 1];
  while(sum >> 16)
    sum = (sum & 0xffff) + (sum >> 16);
  return (unsigned short)~sum;
}

static void put16(unsigned char *p, unsigned v) { p[0] = v >> 8; p[1] = v & 0xff; }

static void on_datagram(int fd, short event, void *arg)
{
  struct udp_port_s *p = (struct udp_port_s *)arg;
  struct session_s *s = p->s;
  unsigned char buf[FRAME_MAX];
  struct sockaddr_in from;
  socklen_t fromlen;
  ssize_t n;
  struct frame_s *f;
  unsigned char *e, *ip, *udp;

  for(;;) {
    fromlen = sizeof(from);
    n = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fromlen);
    if(n < 0)
      return;
    if(n > FRAME_MAX - 42)
      continue;
    p->peer = from;
    p->has_peer = 1;
    f = malloc(sizeof(*f));
    e = f->data;
    memcpy(e, s->soc_mac, 6);
    memcpy(e + 6, s->host_mac, 6);
    put16(e + 12, 0x0800);
    ip = e + 14;
    ip[0] = 0x45; ip[1] = 0;
    put16(ip + 2, 20 + 8 + n);
    put16(ip + 4, s->ip_id++);
    put16(ip + 6, 0x4000);
    ip[8] = 64; ip[9] = 17;
    put16(ip + 10, 0);
    memcpy(ip + 12, &s->host_ip, 4);
    memcpy(ip + 16, &s->soc_ip, 4);
    put16(ip + 10, ip_checksum(ip, 20));
    udp = ip + 20;
    put16(udp, ntohs(from.sin_port));
    put16(udp + 2, p->soc_port);
    put16(udp + 4, 8 + n);
    put16(udp + 6, 0);
    memcpy(udp + 8, buf, n);
    f->len = 42 + n;
    enqueue(s, f);
  }
}

/* A whole frame from the SoC: answer ARP, forward UDP. */
static void from_soc(struct session_s *s, const unsigned char *e, size_t len)
{
  unsigned type, sport, ulen;
  const unsigned char *ip, *udp;
  int i, ihl;
  struct frame_s *f;

  if(len < 14)
    return;
  type = (e[12] << 8) | e[13];
  if(type == 0x0806 && len >= 42 && e[20] == 0 && e[21] == 1) {       /* ARP request */
    f = malloc(sizeof(*f));
    memcpy(f->data, e + 6, 6);
    memcpy(f->data + 6, s->host_mac, 6);
    put16(f->data + 12, 0x0806);
    memcpy(f->data + 14, e + 14, 6);                 /* htype, ptype, hlen, plen */
    put16(f->data + 20, 2);
    memcpy(f->data + 22, s->host_mac, 6);
    memcpy(f->data + 28, e + 38, 4);                 /* sender IP: the IP asked for */
    memcpy(f->data + 32, e + 22, 6);                 /* target: the SoC */
    memcpy(f->data + 38, e + 28, 4);
    f->len = 42;
    enqueue(s, f);
    return;
  }
  if(type != 0x0800 || len < 14 + 20 + 8)
    return;
  ip = e + 14;
  ihl = (ip[0] & 0xf) * 4;
  if(ip[9] != 17 || len < (size_t)(14 + ihl + 8))
    return;
  udp = ip + ihl;
  sport = (udp[0] << 8) | udp[1];
  ulen = (udp[4] << 8) | udp[5];
  if(ulen < 8 || 14 + ihl + ulen > len)
    return;
  for(i = 0; i < s->nports; i++) {
    if(s->ports[i].soc_port == (int)sport && s->ports[i].has_peer) {
      sendto(s->ports[i].fd, udp + 8, ulen - 8, 0, (struct sockaddr *)&s->ports[i].peer,
             sizeof(s->ports[i].peer));
      return;
    }
  }
}

static int parse_mac(const char *hex, unsigned char *mac)
{
  unsigned long long v = strtoull(hex, NULL, 16);
  int i;
  for(i = 0; i < 6; i++)
    mac[i] = (v >> (8 * (5 - i))) & 0xff;
  return RC_OK;
}

static int synfab_udp_new(void **sess, char *args)
{
  struct session_s *s;
  char *a_host_port = NULL, *a_soc_port = NULL, *a_ports = NULL, *a_soc_ip = NULL, *a_host_ip = NULL,
       *a_soc_mac = NULL, *a_peers = NULL, *peer;
  int ret = RC_OK, i;
  static const unsigned char host_mac[6] = {0x02, 0x53, 0x46, 0x48, 0x4f, 0x53};
  struct sockaddr_in addr;

  if(!sess)
    return RC_INVARG;
  s = calloc(1, sizeof(*s));
  if(!s)
    return RC_NOENMEM;
  if((ret = synfab_get_arg("synfab_udp", args, "host_port", &a_host_port)) || (ret = synfab_get_arg("synfab_udp", args, "soc_port", &a_soc_port))
     || (ret = synfab_get_arg("synfab_udp", args, "ports", &a_ports)) || (ret = synfab_get_arg("synfab_udp", args, "soc_ip", &a_soc_ip))
     || (ret = synfab_get_arg("synfab_udp", args, "host_ip", &a_host_ip)) || (ret = synfab_get_arg("synfab_udp", args, "soc_mac", &a_soc_mac))
     || (ret = synfab_get_arg("synfab_udp", args, "peers", &a_peers)))
    goto out;
  memcpy(s->host_mac, host_mac, 6);
  parse_mac(a_soc_mac, s->soc_mac);
  inet_pton(AF_INET, a_soc_ip, &s->soc_ip);
  inet_pton(AF_INET, a_host_ip, &s->host_ip);
  s->nports = atoi(a_ports);
  if(s->nports < 1 || s->nports > MAX_PORTS) {
    ret = RC_INVARG;
    goto out;
  }
  for(i = 0; i < s->nports; i++) {
    struct udp_port_s *p = &s->ports[i];
    int size = 8 << 20;
    p->s = s;
    p->soc_port = atoi(a_soc_port) + i;
    p->fd = socket(AF_INET, SOCK_DGRAM, 0);
    setsockopt(p->fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(atoi(a_host_port) + i);
    if(p->fd < 0 || bind(p->fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
      fprintf(stderr, "[synfab_udp] cannot bind UDP port %d\n", atoi(a_host_port) + i);
      ret = RC_ERROR;
      goto out;
    }
    peer = strtok(i ? NULL : a_peers, ",");
    if(peer && atoi(peer)) {
      p->peer.sin_family = AF_INET;
      p->peer.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      p->peer.sin_port = htons(atoi(peer));
      p->has_peer = 1;
    }
    fcntl(p->fd, F_SETFL, O_NONBLOCK);
    p->ev = event_new(base, p->fd, EV_READ | EV_PERSIST, on_datagram, p);
    event_add(p->ev, NULL);
  }
  printf("[synfab_udp] %d UDP port(s) from 127.0.0.1:%s\n", s->nports, a_host_port);
  fflush(stdout);
out:
  free(a_host_port); free(a_soc_port); free(a_ports); free(a_soc_ip); free(a_host_ip); free(a_soc_mac); free(a_peers);
  *sess = (void *)s;
  return ret;
}

static int synfab_udp_add_pads(void *sess, struct pad_list_s *plist)
{
  struct session_s *s = (struct session_s *)sess;
  if(!sess || !plist)
    return RC_INVARG;
  if(!strcmp(plist->name, "eth"))
    synfab_get_stream_pads(plist->pads, &s->rx, &s->rx_valid, &s->rx_ready, &s->tx, &s->tx_valid, &s->tx_ready);
  if(!strcmp(plist->name, "sys_clk"))
    synfab_get_pad(plist->pads, "sys_clk", &s->sys_clk);
  return RC_OK;
}

static int synfab_udp_tick(void *sess, uint64_t time_ps)
{
  struct session_s *s = (struct session_s *)sess;
  struct frame_s *next;

  if(!clk_pos_edge(&s->edge, *s->sys_clk))
    return RC_OK;

  *s->tx_ready = 1;
  if(*s->tx_valid == 1) {
    if(s->txlen < FRAME_MAX)
      s->txbuf[s->txlen++] = *s->tx;
  } else if(s->txlen) {
    from_soc(s, s->txbuf, s->txlen);
    s->txlen = 0;
  }

  *s->rx_valid = 0;
  if(s->cur) {
    *s->rx_valid = 1;
    *s->rx = s->cur->data[s->cursent++];
    if(s->cursent == s->cur->len) {
      free(s->cur);
      s->cur = NULL;
      s->gap = GAP_CLOCKS;
    }
  } else if(s->gap) {
    s->gap--;
  } else if(s->head) {
    s->cur = s->head;
    s->cursent = 0;
    next = s->head->next;
    s->head = next;
    if(!next)
      s->tail = NULL;
  }
  return RC_OK;
}

static struct ext_module_s ext_mod = {
  "synfab_udp",
  synfab_udp_start,
  synfab_udp_new,
  synfab_udp_add_pads,
  NULL,
  synfab_udp_tick
};

int litex_sim_ext_module_init(int (*register_module)(struct ext_module_s *))
{
  return register_module(&ext_mod);
}
