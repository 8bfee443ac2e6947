// Verilator harness for synfab_fabric: a C API loaded with ctypes by fabric_sim.py.
//
// The clock runs here, never one Python call per cycle. Every cycle drives all ports at
// once: the AXI4-Stream input is fed from a queue, output beats are collected, and the
// AXI4-Lite master advances the transaction in progress (one outstanding at a time).
//
// One cycle: set inputs with clk low, eval (combinational outputs settle), sample every
// valid/ready pair (these transfer at the coming edge), raise clk, eval.
//
// The clk-low eval only recomputes logic fed by the inputs (the model is a posedge-only design
// whose logic never reads clk). When no input changed since the last edge, the outputs it would
// produce are already there, so the harness skips it and only tells the model the clock was low.
#include "Vsynfab_fabric.h"
#include "Vsynfab_fabric___024root.h"
#include "verilated.h"

#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

namespace {

// Verilator keeps the clock value seen by the last eval in this root member (posedge = clk & ~it).
// Where a Verilator version names it differently, the harness always evaluates the clk-low phase.
template <typename Root, typename = void>
struct HasClkMemory : std::false_type {};
template <typename Root>
struct HasClkMemory<Root, std::void_t<decltype(std::declval<Root&>().__Vtrigprevexpr___TOP__clk__0)>>
    : std::true_type {};

template <typename Root>
inline bool mark_clock_low(Root& root) {
    if constexpr (HasClkMemory<Root>::value) {
        root.__Vtrigprevexpr___TOP__clk__0 = 0;
        return true;
    } else {
        return false;
    }
}

// Drives an input port, noting whether its value changed.
template <typename Port, typename Value>
inline void drive(Port& port, Value value, bool& changed) {
    const Port v = static_cast<Port>(value);
    if (port != v) {
        port = v;
        changed = true;
    }
}

// splitmix64: cheap, seedable, good enough for gap patterns.
struct Rng {
    uint64_t state = 0;
    uint64_t next() {
        uint64_t z = (state += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    // True with probability threshold / 2^32.
    bool chance(uint64_t threshold) { return threshold && (next() >> 32) < threshold; }
};

struct Beat {
    uint64_t data;
    uint8_t last;
};

// Response code for an AXI-Lite access that got no response within the timeout.
constexpr int32_t RESP_TIMEOUT = -1;

struct AxilOp {
    bool active = false;
    bool write = false;
    uint64_t addr = 0;
    uint32_t wdata = 0;
    bool addr_done = false;   // AW (write) or AR (read) transferred
    bool data_done = false;   // W transferred (writes only)
    bool resp_done = false;   // B or R transferred
    uint32_t rdata = 0;
    int32_t resp = 0;
};

struct Sim {
    std::unique_ptr<VerilatedContext> ctx;
    std::unique_ptr<Vsynfab_fabric> top;
    std::deque<Beat> in;
    std::vector<uint64_t> out_data;
    std::vector<uint8_t> out_last;
    uint64_t cycles = 0;
    uint64_t frames_out = 0;    // output beats with TLAST since reset
    uint64_t in_taken = 0;      // input beats the fabric took since reset
    uint64_t in_last_cycle = 0; // cycles (since reset) when it took the latest one
    uint64_t gap_in = 0;        // per-cycle probability * 2^32 of holding back s_axis_tvalid
    uint64_t gap_out = 0;       // per-cycle probability * 2^32 of deasserting m_axis_tready
    uint64_t seed = 0;
    Rng rng;
    bool presenting = false;    // s_axis_tvalid is up with in.front(): AXI forbids withdrawing it
    AxilOp op;
    uint64_t axil_timeout = 0;
    bool inputs_changed = true;  // since the last clock edge
};

inline void drive_axil(Sim& s) {
    Vsynfab_fabric* t = s.top.get();
    const AxilOp& op = s.op;
    const bool w = op.active && op.write, r = op.active && !op.write;
    bool& c = s.inputs_changed;
    drive(t->s_axil_awaddr, op.addr, c);
    drive(t->s_axil_awvalid, w && !op.addr_done, c);
    drive(t->s_axil_wdata, op.wdata, c);
    drive(t->s_axil_wstrb, 0xF, c);
    drive(t->s_axil_wvalid, w && !op.data_done, c);
    drive(t->s_axil_bready, w, c);
    drive(t->s_axil_araddr, op.addr, c);
    drive(t->s_axil_arvalid, r && !op.addr_done, c);
    drive(t->s_axil_rready, r, c);
}

inline void tick(Sim& s) {
    Vsynfab_fabric* t = s.top.get();
    // A beat is only offered when none is pending; once offered it stays until taken.
    if (!s.presenting && !s.in.empty() && !s.rng.chance(s.gap_in)) s.presenting = true;
    bool& c = s.inputs_changed;
    if (s.presenting) {
        drive(t->s_axis_tdata, s.in.front().data, c);
        drive(t->s_axis_tlast, s.in.front().last, c);
    }
    drive(t->s_axis_tvalid, s.presenting, c);
    drive(t->m_axis_tready, !s.rng.chance(s.gap_out), c);
    if (s.op.active) drive_axil(s);
    if (c || !mark_clock_low(*t->rootp)) {
        t->clk = 0;
        t->eval();
    }

    const bool in_fire = t->s_axis_tvalid && t->s_axis_tready;
    if (t->m_axis_tvalid && t->m_axis_tready) {
        s.out_data.push_back(t->m_axis_tdata);
        s.out_last.push_back(t->m_axis_tlast);
        s.frames_out += t->m_axis_tlast;
    }
    AxilOp& op = s.op;
    if (op.active) {
        if (op.write) {
            if (t->s_axil_awvalid && t->s_axil_awready) op.addr_done = true;
            if (t->s_axil_wvalid && t->s_axil_wready) op.data_done = true;
            if (t->s_axil_bvalid && t->s_axil_bready) {
                op.resp_done = true;
                op.resp = t->s_axil_bresp;
            }
        } else {
            if (t->s_axil_arvalid && t->s_axil_arready) op.addr_done = true;
            if (t->s_axil_rvalid && t->s_axil_rready) {
                op.resp_done = true;
                op.resp = t->s_axil_rresp;
                op.rdata = t->s_axil_rdata;
            }
        }
    }

    t->clk = 1;
    t->eval();
    s.inputs_changed = false;
    ++s.cycles;
    if (in_fire) {
        s.in.pop_front();
        s.presenting = false;
        ++s.in_taken;
        s.in_last_cycle = s.cycles;
    }
}

// Runs one AXI-Lite transaction to completion; returns its response (or RESP_TIMEOUT).
int32_t axil_access(Sim& s, bool write, uint64_t addr, uint32_t wdata, uint32_t* rdata) {
    s.op = AxilOp{};
    s.op.active = true;
    s.op.write = write;
    s.op.addr = addr;
    s.op.wdata = wdata;
    uint64_t waited = 0;
    while (!s.op.resp_done) {
        if (waited++ == s.axil_timeout) {
            s.op.active = false;
            drive_axil(s);
            return RESP_TIMEOUT;
        }
        tick(s);
    }
    s.op.active = false;
    drive_axil(s);
    if (rdata) *rdata = s.op.rdata;
    return s.op.resp;
}

}  // namespace

extern "C" {

Sim* sim_create(uint64_t axil_timeout_cycles) {
    Sim* s = new Sim;
    s->ctx = std::make_unique<VerilatedContext>();
    s->top = std::make_unique<Vsynfab_fabric>(s->ctx.get(), "synfab_fabric");
    s->axil_timeout = axil_timeout_cycles;
    return s;
}

void sim_destroy(Sim* s) {
    s->top->final();
    delete s;
}

// Holds rst high for `cycles` clocks; empties both queues and zeroes the cycle and frame counts.
void sim_reset(Sim* s, uint32_t cycles) {
    s->in.clear();
    s->out_data.clear();
    s->out_last.clear();
    s->presenting = false;
    s->op = AxilOp{};
    drive_axil(*s);
    s->rng.state = s->seed;
    Vsynfab_fabric* t = s->top.get();
    drive(t->rst, 1, s->inputs_changed);
    for (uint32_t i = 0; i < cycles; ++i) tick(*s);
    drive(t->rst, 0, s->inputs_changed);
    s->out_data.clear();
    s->out_last.clear();
    s->cycles = 0;
    s->frames_out = 0;
    s->in_taken = 0;
    s->in_last_cycle = 0;
}

// Probabilities are given as thresholds over 2^32 (0 = never).
void sim_set_gaps(Sim* s, uint64_t gap_in, uint64_t gap_out, uint64_t seed) {
    s->gap_in = gap_in;
    s->gap_out = gap_out;
    s->seed = seed;
    s->rng.state = seed;
}

int32_t sim_axil_write(Sim* s, uint64_t addr, uint32_t data) {
    return axil_access(*s, true, addr, data, nullptr);
}

int32_t sim_axil_read(Sim* s, uint64_t addr, uint32_t* data) {
    return axil_access(*s, false, addr, 0, data);
}

// Bulk variants stop at the first non-OKAY response: it is returned and *done holds its
// index; on success they return 0 with *done == n.
int32_t sim_axil_write_block(Sim* s, const uint64_t* addrs, const uint32_t* data, uint64_t n,
                             uint64_t* done) {
    for (uint64_t i = 0; i < n; ++i) {
        int32_t resp = axil_access(*s, true, addrs[i], data[i], nullptr);
        if (resp != 0) {
            *done = i;
            return resp;
        }
    }
    *done = n;
    return 0;
}

int32_t sim_axil_read_block(Sim* s, const uint64_t* addrs, uint32_t* data, uint64_t n,
                            uint64_t* done) {
    for (uint64_t i = 0; i < n; ++i) {
        int32_t resp = axil_access(*s, false, addrs[i], 0, &data[i]);
        if (resp != 0) {
            *done = i;
            return resp;
        }
    }
    *done = n;
    return 0;
}

void sim_push(Sim* s, const uint64_t* data, const uint8_t* last, uint64_t n) {
    for (uint64_t i = 0; i < n; ++i) s->in.push_back(Beat{data[i], static_cast<uint8_t>(last[i] != 0)});
}

void sim_run(Sim* s, uint64_t cycles) {
    for (uint64_t i = 0; i < cycles; ++i) tick(*s);
}

// Clocks until `frames` more output beats with TLAST were collected; returns the cycles
// that took, or -1 if max_cycles passed first.
int64_t sim_run_until_frames(Sim* s, uint64_t frames, uint64_t max_cycles) {
    const uint64_t target = s->frames_out + frames;
    for (uint64_t i = 0; i < max_cycles; ++i) {
        if (s->frames_out >= target) return static_cast<int64_t>(i);
        tick(*s);
    }
    return s->frames_out >= target ? static_cast<int64_t>(max_cycles) : -1;
}

uint64_t sim_out_count(const Sim* s) { return s->out_data.size(); }

// Moves up to `max` collected output beats (oldest first) into the arrays; returns how many.
uint64_t sim_pull(Sim* s, uint64_t* data, uint8_t* last, uint64_t max) {
    const uint64_t n = s->out_data.size() < max ? s->out_data.size() : max;
    std::memcpy(data, s->out_data.data(), n * sizeof(uint64_t));
    std::memcpy(last, s->out_last.data(), n);
    s->out_data.erase(s->out_data.begin(), s->out_data.begin() + n);
    s->out_last.erase(s->out_last.begin(), s->out_last.begin() + n);
    return n;
}

uint64_t sim_cycles(const Sim* s) { return s->cycles; }
uint64_t sim_frames_out(const Sim* s) { return s->frames_out; }
uint64_t sim_in_pending(const Sim* s) { return s->in.size(); }
uint64_t sim_in_taken(const Sim* s) { return s->in_taken; }
uint64_t sim_in_last_cycle(const Sim* s) { return s->in_last_cycle; }

}  // extern "C"
