/* A thin C layer over MPI for rustgpu's multi-worker training (src/workers/mpi.rs).
 * MPI's handles (communicators, datatypes, requests) are macros or implementation-defined
 * types; here they stay in C, so the Rust side sees plain functions and ints, whatever MPI
 * (Open MPI, MPICH) the package was built with. Every function returns an MPI error code
 * (MPI_SUCCESS is 0) and never aborts: the communicator returns errors instead. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

static MPI_Comm comm = MPI_COMM_NULL;

/* R loads packages' libraries with RTLD_LOCAL; Open MPI's plugins need libmpi's symbols
 * global, so libmpi is opened again with RTLD_GLOBAL first (as Rmpi and mpi4py do). */
static void make_mpi_global(void) {
  Dl_info info;
  if (dladdr((void *)&MPI_Init_thread, &info) && info.dli_fname) {
    dlopen(info.dli_fname, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD);
  }
}

int rg_mpi_init(int *rank, int *size) {
  int initialized = 0, rc;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    make_mpi_global();
    /* Calls come from one thread at a time (a step's thread), not always the same one. */
    rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided);
    if (rc != MPI_SUCCESS) return rc;
  }
  if (comm == MPI_COMM_NULL) {
    rc = MPI_Comm_dup(MPI_COMM_WORLD, &comm);
    if (rc != MPI_SUCCESS) return rc;
    MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
  }
  MPI_Comm_rank(comm, rank);
  return MPI_Comm_size(comm, size);
}

/* Polls a request until it completes or keep_waiting() says to stop (returns 0): then
 * *abandoned is set and the request is left behind (the job is failing anyway). */
static int wait_for(MPI_Request *req, int (*keep_waiting)(void *), void *ctx, int *abandoned) {
  int done = 0;
  *abandoned = 0;
  for (;;) {
    int rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS || done) return rc;
    if (!keep_waiting(ctx)) {
      *abandoned = 1;
      return MPI_SUCCESS;
    }
  }
}

/* In-place element-wise sum over every rank, in pieces of at most INT_MAX / 2 values. */
int rg_mpi_allreduce_sum_f64(double *values, long long n, int (*keep_waiting)(void *), void *ctx, int *abandoned) {
  const long long piece = INT_MAX / 2;
  *abandoned = 0;
  for (long long start = 0; start < n; start += piece) {
    int count = (int)(n - start < piece ? n - start : piece);
    MPI_Request req;
    int rc = MPI_Iallreduce(MPI_IN_PLACE, values + start, count, MPI_DOUBLE, MPI_SUM, comm, &req);
    if (rc != MPI_SUCCESS) return rc;
    rc = wait_for(&req, keep_waiting, ctx, abandoned);
    if (rc != MPI_SUCCESS || *abandoned) return rc;
  }
  return MPI_SUCCESS;
}

/* `bytes` bytes from `root` to every rank. */
int rg_mpi_broadcast(void *buffer, long long bytes, int root, int (*keep_waiting)(void *), void *ctx, int *abandoned) {
  const long long piece = INT_MAX / 2;
  *abandoned = 0;
  for (long long start = 0; start < bytes; start += piece) {
    int count = (int)(bytes - start < piece ? bytes - start : piece);
    MPI_Request req;
    int rc = MPI_Ibcast((char *)buffer + start, count, MPI_BYTE, root, comm, &req);
    if (rc != MPI_SUCCESS) return rc;
    rc = wait_for(&req, keep_waiting, ctx, abandoned);
    if (rc != MPI_SUCCESS || *abandoned) return rc;
  }
  return MPI_SUCCESS;
}

int rg_mpi_processor_name(char *name, int capacity) {
  char buffer[MPI_MAX_PROCESSOR_NAME];
  int len = 0;
  int rc = MPI_Get_processor_name(buffer, &len);
  if (rc != MPI_SUCCESS) return rc;
  if (len >= capacity) len = capacity - 1;
  memcpy(name, buffer, (size_t)len);
  name[len] = '\0';
  return MPI_SUCCESS;
}

void rg_mpi_error_string(int code, char *text, int capacity) {
  char buffer[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, buffer, &len) != MPI_SUCCESS) len = 0;
  if (len >= capacity) len = capacity - 1;
  memcpy(text, buffer, (size_t)len);
  text[len] = '\0';
}

int rg_mpi_finalize(void) {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return MPI_SUCCESS;
  if (comm != MPI_COMM_NULL) MPI_Comm_free(&comm);
  return MPI_Finalize();
}

/* A sum started now and finished later (a bucket of gradients sent while the backward pass
 * goes on). MPI_Request stays on the C side, in a block the caller holds until the end. */
typedef struct {
  MPI_Request request;
} rg_pending;

int rg_mpi_start_sum_f64(double *values, long long n, void **pending) {
  rg_pending *p;
  *pending = NULL;
  if (n > INT_MAX) return MPI_ERR_COUNT;
  p = (rg_pending *)malloc(sizeof(rg_pending));
  if (!p) return MPI_ERR_NO_MEM;
  int rc = MPI_Iallreduce(MPI_IN_PLACE, values, (int)n, MPI_DOUBLE, MPI_SUM, comm, &p->request);
  if (rc != MPI_SUCCESS) {
    free(p);
    return rc;
  }
  *pending = p;
  return MPI_SUCCESS;
}

/* Lets MPI move a started sum on (Open MPI progresses only inside MPI calls). */
int rg_mpi_nudge(void *pending, int *done) {
  return MPI_Test(&((rg_pending *)pending)->request, done, MPI_STATUS_IGNORE);
}

/* Waits for a started sum, then frees its block; abandoned, the block stays (MPI may still
 * write the values: the caller keeps them too). */
int rg_mpi_finish_sum(void *pending, int (*keep_waiting)(void *), void *ctx, int *abandoned) {
  int rc = wait_for(&((rg_pending *)pending)->request, keep_waiting, ctx, abandoned);
  if (rc == MPI_SUCCESS && !*abandoned) free(pending);
  return rc;
}
