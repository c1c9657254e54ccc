/* events.h — named timing events (PETSc -log_view style).
 *
 * bb_event_begin("calib.gram") ... bb_event_end("calib.gram", flops, bytes)
 * accumulates count, seconds, flops and bytes per name on this rank. Events do
 * not nest under the same name. The distributed report (min/avg/max over ranks)
 * is mpi/dist.h: bb_dist_events_report; bb_events_print is the one-rank form. */
#ifndef BB_EVENTS_H
#define BB_EVENTS_H

#include <stdio.h>

#define BB_EVENT_NAME_MAX 48
#define BB_EVENT_MAX 128

typedef struct {
    char name[BB_EVENT_NAME_MAX];
    long count;
    double seconds;
    double flops;
    double bytes;
    double t_open; /* start time while running, else < 0 */
} bb_event_stat;

void bb_event_begin(const char *name);
void bb_event_end(const char *name, double flops, double bytes);
/* All events in first-use order; returns their number. */
int bb_events_get(const bb_event_stat **stats);
void bb_events_reset(void);
/* Table of this rank's events. */
void bb_events_print(FILE *f);

#endif
