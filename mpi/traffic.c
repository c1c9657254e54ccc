/* traffic.c — MPI profiling-interface wrappers that count calls, seconds and payload bytes (traffic.h). */
#include "mpi/traffic.h"

#include <mpi.h>

static bb_traffic total;

void bb_traffic_get(bb_traffic *out) { *out = total; }

bb_traffic bb_traffic_diff(const bb_traffic *a, const bb_traffic *b) {
    return (bb_traffic){.calls = a->calls - b->calls,
                        .seconds = a->seconds - b->seconds,
                        .bytes_sent = a->bytes_sent - b->bytes_sent,
                        .bytes_recv = a->bytes_recv - b->bytes_recv};
}

static double bytes_of(int count, MPI_Datatype t) {
    int size = 0;
    if (count <= 0 || PMPI_Type_size(t, &size) != MPI_SUCCESS) return 0;
    return (double)count * (double)size;
}

static int others(MPI_Comm comm) {
    int n = 1;
    PMPI_Comm_size(comm, &n);
    return n - 1;
}

static void book(double t0, double sent, double recv) {
    total.calls++;
    total.seconds += PMPI_Wtime() - t0;
    total.bytes_sent += sent;
    total.bytes_recv += recv;
}

int MPI_Send(const void *buf, int count, MPI_Datatype t, int dest, int tag, MPI_Comm comm) {
    double t0 = PMPI_Wtime();
    int rc = PMPI_Send(buf, count, t, dest, tag, comm);
    book(t0, bytes_of(count, t), 0);
    return rc;
}

int MPI_Recv(void *buf, int count, MPI_Datatype t, int src, int tag, MPI_Comm comm, MPI_Status *status) {
    double t0 = PMPI_Wtime();
    MPI_Status own;
    MPI_Status *s = status == MPI_STATUS_IGNORE ? &own : status;
    int rc = PMPI_Recv(buf, count, t, src, tag, comm, s);
    int got = 0;
    if (rc != MPI_SUCCESS || PMPI_Get_count(s, MPI_BYTE, &got) != MPI_SUCCESS || got < 0) got = 0;
    book(t0, 0, got);
    return rc;
}

int MPI_Isend(const void *buf, int count, MPI_Datatype t, int dest, int tag, MPI_Comm comm, MPI_Request *req) {
    double t0 = PMPI_Wtime();
    int rc = PMPI_Isend(buf, count, t, dest, tag, comm, req);
    book(t0, bytes_of(count, t), 0);
    return rc;
}

int MPI_Irecv(void *buf, int count, MPI_Datatype t, int src, int tag, MPI_Comm comm, MPI_Request *req) {
    double t0 = PMPI_Wtime();
    int rc = PMPI_Irecv(buf, count, t, src, tag, comm, req);
    book(t0, 0, bytes_of(count, t));
    return rc;
}

int MPI_Wait(MPI_Request *req, MPI_Status *status) {
    double t0 = PMPI_Wtime();
    int rc = PMPI_Wait(req, status);
    book(t0, 0, 0);
    return rc;
}

int MPI_Waitall(int count, MPI_Request reqs[], MPI_Status statuses[]) {
    double t0 = PMPI_Wtime();
    int rc = PMPI_Waitall(count, reqs, statuses);
    book(t0, 0, 0);
    return rc;
}

int MPI_Barrier(MPI_Comm comm) {
    double t0 = PMPI_Wtime();
    int rc = PMPI_Barrier(comm);
    book(t0, 0, 0);
    return rc;
}

int MPI_Bcast(void *buf, int count, MPI_Datatype t, int root, MPI_Comm comm) {
    double t0 = PMPI_Wtime();
    int rc = PMPI_Bcast(buf, count, t, root, comm);
    int me = 0, n = others(comm);
    PMPI_Comm_rank(comm, &me);
    double b = n > 0 ? bytes_of(count, t) : 0;
    book(t0, me == root ? n * b : 0, me == root ? 0 : b);
    return rc;
}

int MPI_Allreduce(const void *sbuf, void *rbuf, int count, MPI_Datatype t, MPI_Op op, MPI_Comm comm) {
    double t0 = PMPI_Wtime();
    int rc = PMPI_Allreduce(sbuf, rbuf, count, t, op, comm);
    double b = others(comm) > 0 ? bytes_of(count, t) : 0;
    book(t0, b, b);
    return rc;
}

int MPI_Reduce(const void *sbuf, void *rbuf, int count, MPI_Datatype t, MPI_Op op, int root, MPI_Comm comm) {
    double t0 = PMPI_Wtime();
    int rc = PMPI_Reduce(sbuf, rbuf, count, t, op, root, comm);
    int me = 0, n = others(comm);
    PMPI_Comm_rank(comm, &me);
    double b = bytes_of(count, t);
    book(t0, me == root ? 0 : b, me == root ? n * b : 0);
    return rc;
}

int MPI_Allgather(const void *sbuf, int scount, MPI_Datatype st, void *rbuf, int rcount, MPI_Datatype rt,
                  MPI_Comm comm) {
    double t0 = PMPI_Wtime();
    int rc = PMPI_Allgather(sbuf, scount, st, rbuf, rcount, rt, comm);
    int n = others(comm);
    double mine = sbuf == MPI_IN_PLACE ? bytes_of(rcount, rt) : bytes_of(scount, st);
    book(t0, n * mine, n * bytes_of(rcount, rt));
    return rc;
}

int MPI_Allgatherv(const void *sbuf, int scount, MPI_Datatype st, void *rbuf, const int rcounts[], const int displs[],
                   MPI_Datatype rt, MPI_Comm comm) {
    double t0 = PMPI_Wtime();
    int rc = PMPI_Allgatherv(sbuf, scount, st, rbuf, rcounts, displs, rt, comm);
    int me = 0, n = others(comm);
    PMPI_Comm_rank(comm, &me);
    double recv = 0;
    for (int j = 0; j <= n; j++)
        if (j != me) recv += bytes_of(rcounts[j], rt);
    double mine = sbuf == MPI_IN_PLACE ? bytes_of(rcounts[me], rt) : bytes_of(scount, st);
    book(t0, n * mine, recv);
    return rc;
}
