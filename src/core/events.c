/* events.c — named timing events. */
#include "core/events.h"

#include <string.h>

#include "core/log.h"

static bb_event_stat table[BB_EVENT_MAX];
static int n_events;

static bb_event_stat *find(const char *name, int create) {
    for (int i = 0; i < n_events; i++)
        if (strcmp(table[i].name, name) == 0) return &table[i];
    if (!create) return NULL;
    if (n_events == BB_EVENT_MAX) return NULL;
    bb_event_stat *e = &table[n_events++];
    memset(e, 0, sizeof *e);
    strncpy(e->name, name, BB_EVENT_NAME_MAX - 1);
    e->t_open = -1;
    return e;
}

void bb_event_begin(const char *name) {
    bb_event_stat *e = find(name, 1);
    if (e) e->t_open = bb_now();
}

void bb_event_end(const char *name, double flops, double bytes) {
    bb_event_stat *e = find(name, 0);
    if (!e || e->t_open < 0) return;
    e->seconds += bb_now() - e->t_open;
    e->t_open = -1;
    e->count++;
    e->flops += flops;
    e->bytes += bytes;
}

int bb_events_get(const bb_event_stat **stats) {
    *stats = table;
    return n_events;
}

void bb_events_reset(void) { n_events = 0; }

void bb_events_print(FILE *f) {
    if (n_events == 0) return;
    fprintf(f, "%-28s %8s %12s %12s %12s\n", "event", "count", "time [s]", "GFLOP/s", "GB/s");
    for (int i = 0; i < n_events; i++) {
        const bb_event_stat *e = &table[i];
        double gf = e->seconds > 0 && e->flops > 0 ? e->flops / e->seconds * 1e-9 : 0;
        double gb = e->seconds > 0 && e->bytes > 0 ? e->bytes / e->seconds * 1e-9 : 0;
        fprintf(f, "%-28s %8ld %12.4f %12.2f %12.2f\n", e->name, e->count, e->seconds, gf, gb);
    }
}
