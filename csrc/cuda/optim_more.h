// The fused optimizer updates of optim_more.cu: the row-gradient (sparse) versions of SGD, Adam,
// RMSprop and Adagrad, and Adadelta, Adamax, Nadam, Ftrl, Lion, Lamb and Adafactor, dense and
// sparse. The CPU module's names, arguments and checks (csrc/cpu/optim.cpp, csrc/optim_checks.h).
#pragma once
#include "gpu.h"

namespace lamina {
namespace gpu {

void sgd_sparse(Buffer& var, int64_t D, const Buffer& ib, const Buffer& gb, Buffer& vel, double lr, double momentum,
                bool nesterov);
void adam_sparse(Buffer& var, int64_t D, const Buffer& ib, const Buffer& gb, Buffer& m, Buffer& v, Buffer& vhat,
                 double lr_t, double b1, double b2, double eps, bool amsgrad, double wd_lr);
void rmsprop_sparse(Buffer& var, int64_t D, const Buffer& ib, const Buffer& gb, Buffer& vel, Buffer& avg_grad,
                    Buffer& mom, double lr, double rho, double momentum, double eps, bool centered);
void adagrad_sparse(Buffer& var, int64_t D, const Buffer& ib, const Buffer& gb, Buffer& acc, double lr, double eps);

void adadelta(Buffer& var, const Buffer& grad, Buffer& ag, Buffer& ad, double lr, double rho, double one_m_rho,
              double eps);
void adadelta_sparse(Buffer& var, int64_t D, const Buffer& ib, const Buffer& gb, Buffer& ag, Buffer& ad, double lr,
                     double rho, double one_m_rho, double eps);
void adamax(Buffer& var, const Buffer& grad, Buffer& m, Buffer& u, double lr, double one_m_b1, double b2, double eps,
            double one_m_b1p);
void adamax_sparse(Buffer& var, int64_t D, const Buffer& ib, const Buffer& gb, Buffer& m, Buffer& u, double lr,
                   double one_m_b1, double b2, double eps, double one_m_b1p);
void nadam(Buffer& var, const Buffer& grad, Buffer& m, Buffer& v, double lr, double one_m_b1, double one_m_b2,
           double eps, double u_t1, double one_m_uprod_t1, double one_m_u_t, double one_m_uprod_t, double one_m_b2p);
void nadam_sparse(Buffer& var, int64_t D, const Buffer& ib, const Buffer& gb, Buffer& m, Buffer& v, double lr,
                  double one_m_b1, double one_m_b2, double eps, double u_t1, double one_m_uprod_t1, double one_m_u_t,
                  double one_m_uprod_t, double one_m_b2p);
void ftrl(Buffer& var, const Buffer& grad, Buffer& acc, Buffer& lin, double lr, double neg_power, double l1,
          double two_l2, double two_shrinkage);
void ftrl_sparse(Buffer& var, int64_t D, const Buffer& ib, const Buffer& gb, Buffer& acc, Buffer& lin, double lr,
                 double neg_power, double l1, double two_l2, double two_shrinkage);
void lion(Buffer& var, const Buffer& grad, Buffer& m, double lr, double b1, double one_m_b1, double b2,
          double one_m_b2);
void lion_sparse(Buffer& var, int64_t D, const Buffer& ib, const Buffer& gb, Buffer& m, double lr, double b1,
                 double one_m_b1, double b2, double one_m_b2);
void lamb(Buffer& var, const Buffer& grad, Buffer& m, Buffer& v, double lr, double one_m_b1, double one_m_b2,
          double eps, double one_m_b1p, double one_m_b2p);
void lamb_sparse(Buffer& var, int64_t D, const Buffer& ib, const Buffer& gb, Buffer& m, Buffer& v, double lr,
                 double one_m_b1, double one_m_b2, double eps, double one_m_b1p, double one_m_b2p);
void adafactor(Buffer& var, const Buffer& grad, Buffer* r, Buffer* c, Buffer& v, int64_t B, int64_t R, int64_t C,
               bool factored, double rho_t, double beta, double one_m_beta, double eps1, double eps2, double clip);
void adafactor_sparse(Buffer& var, int64_t D, const Buffer& ib, const Buffer& gb, Buffer* r, Buffer* c, Buffer& v,
                      int64_t B, int64_t R, int64_t C, bool factored, double rho_t, double beta, double one_m_beta,
                      double eps1, double eps2, double clip);

}  // namespace gpu
}  // namespace lamina
