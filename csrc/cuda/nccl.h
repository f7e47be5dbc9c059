// NCCL for collectives between GPUs of different processes (nccl.cpp): loaded at run time, so the
// module builds and runs without it (gradients then go through MPI on the host).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "gpu.h"

namespace lamina {
namespace gpu {

bool load_nccl(const std::string& path);  // the default names, or a path; true when loaded
std::string nccl_status();
std::string nccl_unique_id();  // rank 0's 128 bytes, to be sent to every rank (MPI)
// This process's rank of `nranks`, on gpu:device: blocks until every rank has joined; a handle.
int64_t nccl_comm_init(int device, int nranks, int rank, const std::string& id);
// dsts[i] = the sum over the ranks of srcs[i] (in place where they are the same buffer), queued on
// the device's stream (grouped when several).
void nccl_all_reduce(int64_t comm, const std::vector<const Buffer*>& srcs, const std::vector<Buffer*>& dsts);
void nccl_comm_destroy(int64_t comm);

}  // namespace gpu
}  // namespace lamina
