/* synfab_wire: one end of a board-to-board link cable for the LiteX sim, on a host UDP socket.
 *
 * The pads (an interface shaped like the sim's "serial": source_* the SoC's bytes out, sink_*
 * its bytes in) carry a link end's byte stream (gateware/link/: LinkSender / LinkReceiver on
 * LiteX's RS232PHYModel).  Bytes the SoC sends leave, batched into datagrams, from
 * 127.0.0.1:local_port to 127.0.0.1:peer_port; datagrams arriving on local_port enter the SoC a
 * byte per clock.  The peer is the other board's end or a program standing for the cable between
 * them (runtime.linked_litex.SimCable, which can also corrupt or cut it).  Unlike LiteX's
 * serial2tcp its clock-edge state is per session, so one sim can have several.
 * Args (JSON strings): local_port, peer_port.
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

#define RING 65536
#define BATCH 512

struct session_s {
  char *tx;
  char *tx_valid;
  char *tx_ready;
  char *rx;
  char *rx_valid;
  char *rx_ready;
  char *sys_clk;
  clk_edge_state_t edge;
  int fd;
  struct sockaddr_in peer;
  struct event *ev;
  unsigned char out[BATCH];
  size_t outlen;
  unsigned char ring[RING];
  size_t start, len;
};

static struct event_base *base = NULL;

static int synfab_wire_start(void *b)
{
  base = (struct event_base *)b;
  printf("[synfab_wire] loaded\n");
  return RC_OK;
}

static void on_datagram(int fd, short event, void *arg)
{
  struct session_s *s = (struct session_s *)arg;
  unsigned char buf[4096];
  ssize_t n, i;

  for(;;) {
    n = recv(fd, buf, sizeof(buf), 0);
    if(n <= 0)
      return;
    for(i = 0; i < n && s->len < RING; i++) {     /* a full ring drops, as an overrun line would */
      s->ring[(s->start + s->len) % RING] = buf[i];
      s->len++;
    }
  }
}

static void flush(struct session_s *s)
{
  if(s->outlen) {
    sendto(s->fd, s->out, s->outlen, 0, (struct sockaddr *)&s->peer, sizeof(s->peer));
    s->outlen = 0;
  }
}

static int synfab_wire_new(void **sess, char *args)
{
  struct session_s *s;
  char *a_local = NULL, *a_peer = NULL;
  int ret = RC_OK, size = 8 << 20;
  struct sockaddr_in addr;

  if(!sess)
    return RC_INVARG;
  s = calloc(1, sizeof(*s));
  if(!s)
    return RC_NOENMEM;
  if((ret = synfab_get_arg("synfab_wire", args, "local_port", &a_local)) || (ret = synfab_get_arg("synfab_wire", args, "peer_port", &a_peer)))
    goto out;
  s->fd = socket(AF_INET, SOCK_DGRAM, 0);
  setsockopt(s->fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
  memset(&addr, 0, sizeof(addr));
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(atoi(a_local));
  if(s->fd < 0 || bind(s->fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
    fprintf(stderr, "[synfab_wire] cannot bind UDP port %s\n", a_local);
    ret = RC_ERROR;
    goto out;
  }
  fcntl(s->fd, F_SETFL, O_NONBLOCK);
  memset(&s->peer, 0, sizeof(s->peer));
  s->peer.sin_family = AF_INET;
  s->peer.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  s->peer.sin_port = htons(atoi(a_peer));
  s->ev = event_new(base, s->fd, EV_READ | EV_PERSIST, on_datagram, s);
  event_add(s->ev, NULL);
  printf("[synfab_wire] 127.0.0.1:%s -> 127.0.0.1:%s\n", a_local, a_peer);
  fflush(stdout);
out:
  free(a_local); free(a_peer);
  *sess = (void *)s;
  return ret;
}

static int synfab_wire_add_pads(void *sess, struct pad_list_s *plist)
{
  struct session_s *s = (struct session_s *)sess;

  if(!sess || !plist)
    return RC_INVARG;
  if(!strcmp(plist->name, "sys_clk")) {
    synfab_get_pad(plist->pads, "sys_clk", &s->sys_clk);
    return RC_OK;
  }
  synfab_get_stream_pads(plist->pads, &s->rx, &s->rx_valid, &s->rx_ready, &s->tx, &s->tx_valid, &s->tx_ready);
  return RC_OK;
}

static int synfab_wire_tick(void *sess, uint64_t time_ps)
{
  struct session_s *s = (struct session_s *)sess;

  if(!clk_pos_edge(&s->edge, *s->sys_clk))
    return RC_OK;
  *s->tx_ready = 1;
  if(*s->tx_valid) {
    s->out[s->outlen++] = *s->tx;
    if(s->outlen == BATCH)
      flush(s);
  } else {
    flush(s);                    /* a burst ended: its bytes go now */
  }
  if(*s->rx_valid && *s->rx_ready) {   /* the byte shown last clock was taken */
    s->start = (s->start + 1) % RING;
    s->len--;
  }
  *s->rx_valid = 0;
  if(s->len) {
    *s->rx = s->ring[s->start];
    *s->rx_valid = 1;
  }
  return RC_OK;
}

static struct ext_module_s ext_mod = {
  "synfab_wire",
  synfab_wire_start,
  synfab_wire_new,
  synfab_wire_add_pads,
  NULL,
  synfab_wire_tick
};

int litex_sim_ext_module_init(int (*register_module)(struct ext_module_s *))
{
  return register_module(&ext_mod);
}
