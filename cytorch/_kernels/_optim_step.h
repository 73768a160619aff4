/* cytorch/_kernels/_optim_step.h -- the body of one compiled optimizer step, a C "template":
 * ``_optim.h`` includes this file six times, with
 *
 *     CY_T       float or double
 *     CY_SQRT    sqrtf or sqrt (the root in CY_T: C's sqrt of a float would divide in double)
 *     CY_FN      the function's name (cy_optim_step_<variant>_<f|d>)
 *     CY_TARGET  the variant's target attribute (``_isa.h``), or nothing for the default
 *
 * defined before each inclusion.  No include guard: that is the point.
 *
 * Elements ``start <= i < stop`` of the parameter ``p``, its gradient ``g`` and its slots
 * ``s0, s1, s2`` (the optimizer's buffers, in ``slots()`` order) are updated in blocks of
 * CY_OPTIM_BLOCK values, small enough to stay in the L1 cache: first the gradient as the update
 * sees it (L2 penalty, clipping: flags checked once per block), then one loop per update rule
 * that reads each buffer once and writes it once.  Every expression performs the twin's
 * operations (``cytorch/optimizers.py``, ``_update``) in the twin's order, each rounded to CY_T
 * (the module is compiled with -ffp-contract=off: no fused multiply-add), so the compiled step
 * and the NumPy twin give the same bits.
 */

static CY_TARGET void CY_FN(const cy_optim_args *a, CY_T *p, CY_T *g, CY_T *s0, CY_T *s1,
                            CY_T *s2, Py_ssize_t start, Py_ssize_t stop)
{
    /* the constants rounded to CY_T once, as NumPy rounds a Python float it combines with an
       array of CY_T (NEP 50) */
    const CY_T l2 = (CY_T)a->l2, scale = (CY_T)a->clip_arg, decay = (CY_T)a->decay;
    const CY_T c0 = (CY_T)a->c[0], c1 = (CY_T)a->c[1], c2 = (CY_T)a->c[2],
               c3 = (CY_T)a->c[3], c4 = (CY_T)a->c[4];
    const int rewrite = a->l2 != 0.0 || a->clip != CY_CLIP_NONE;
    CY_T gb[CY_OPTIM_BLOCK];
    Py_ssize_t i, k, m;

    for (i = start; i < stop; i += CY_OPTIM_BLOCK) {
        CY_T *P = p + i, *G = g + i;
        CY_T *S0 = s0 ? s0 + i : NULL, *S1 = s1 ? s1 + i : NULL, *S2 = s2 ? s2 + i : NULL;
        const CY_T *gg = G;                         /* the gradient the update reads */
        m = stop - i < CY_OPTIM_BLOCK ? stop - i : CY_OPTIM_BLOCK;

        /* 0-1. L2 penalty, clipping; the result is written back to g, as the twin does */
        if (rewrite) {
            for (k = 0; k < m; k++) gb[k] = G[k];
            if (a->l2 != 0.0)
                for (k = 0; k < m; k++) gb[k] = gb[k] + l2 * P[k];
            if (a->clip == CY_CLIP_SCALE)
                for (k = 0; k < m; k++) gb[k] = gb[k] * scale;
            else if (a->clip == CY_CLIP_VALUE)        /* NaN stays NaN, as in np.clip */
                for (k = 0; k < m; k++)
                    gb[k] = gb[k] < -scale ? -scale : (gb[k] > scale ? scale : gb[k]);
            for (k = 0; k < m; k++) G[k] = gb[k];
            gg = gb;
        }
        /* 2. decoupled weight decay, before the update: p <- p - (lr λ) p */
        if (a->decay != 0.0)
            for (k = 0; k < m; k++) P[k] = P[k] - P[k] * decay;

        /* 3. the update; the comment above each loop is the twin's formula */
        switch (a->kind) {
        case CY_OPTIM_SGD:                 /* c0 = lr, c1 = momentum */
            if (!a->flag1)                 /* p <- p - lr g */
                for (k = 0; k < m; k++) P[k] = P[k] - gg[k] * c0;
            else if (!a->flag2)            /* v <- m v - lr g;  p <- p + v */
                for (k = 0; k < m; k++) {
                    CY_T v = S0[k] * c1 - gg[k] * c0;
                    S0[k] = v;
                    P[k] = P[k] + v;
                }
            else                           /* nesterov: p <- p - lr g + m v (the new v) */
                for (k = 0; k < m; k++) {
                    CY_T u = gg[k] * c0, v = S0[k] * c1 - u;
                    S0[k] = v;
                    P[k] = (P[k] - u) + v * c1;
                }
            break;

        case CY_OPTIM_RMSPROP: {           /* c0 = rho, c1 = 1 - rho, c2 = eps, c3 = lr,
                                              c4 = momentum; s0 = s, s1 = v, s2 = a */
            /* s <- ρ s + (1 - ρ) g²;  centered: a <- ρ a + (1 - ρ) g, d = s - a² + ε
               (else d = s + ε);  Δ = lr g / sqrt(d); momentum: v <- m v + Δ, p <- p - v
               (else p <- p - Δ) */
            const int centered = a->flag2, momentum = a->flag1;
            if (!centered && !momentum)
                for (k = 0; k < m; k++) {
                    CY_T s = S0[k] * c0 + (gg[k] * gg[k]) * c1;
                    S0[k] = s;
                    P[k] = P[k] - (gg[k] / CY_SQRT(s + c2)) * c3;
                }
            else if (!centered)
                for (k = 0; k < m; k++) {
                    CY_T s = S0[k] * c0 + (gg[k] * gg[k]) * c1, v;
                    S0[k] = s;
                    v = S1[k] * c4 + (gg[k] / CY_SQRT(s + c2)) * c3;
                    S1[k] = v;
                    P[k] = P[k] - v;
                }
            else if (!momentum)
                for (k = 0; k < m; k++) {
                    CY_T s = S0[k] * c0 + (gg[k] * gg[k]) * c1, r = S2[k] * c0 + gg[k] * c1;
                    S0[k] = s;
                    S2[k] = r;
                    P[k] = P[k] - (gg[k] / CY_SQRT((s - r * r) + c2)) * c3;
                }
            else
                for (k = 0; k < m; k++) {
                    CY_T s = S0[k] * c0 + (gg[k] * gg[k]) * c1, r = S2[k] * c0 + gg[k] * c1, v;
                    S0[k] = s;
                    S2[k] = r;
                    v = S1[k] * c4 + (gg[k] / CY_SQRT((s - r * r) + c2)) * c3;
                    S1[k] = v;
                    P[k] = P[k] - v;
                }
            break;
        }

        case CY_OPTIM_ADAGRAD:             /* c0 = eps, c1 = lr; s0 = a */
            /* a <- a + g²;  p <- p - lr g / sqrt(a + ε) */
            for (k = 0; k < m; k++) {
                CY_T s = S0[k] + gg[k] * gg[k];
                S0[k] = s;
                P[k] = P[k] - (gg[k] / CY_SQRT(s + c0)) * c1;
            }
            break;

        case CY_OPTIM_ADAM:                /* c0 = 1 - β1, c1 = 1 - β2, c2 = eps,
                                              c3 = lr sqrt(1 - β2^t) / (1 - β1^t);
                                              s0 = m, s1 = v, s2 = v̂ */
            /* m <- m + (g - m)(1 - β1);  v <- v + (g² - v)(1 - β2);
               amsgrad: v̂ <- max(v̂, v), used for v;  p <- p - c3 m / (sqrt(v) + ε) */
            if (!a->flag1)
                for (k = 0; k < m; k++) {
                    CY_T mk = S0[k] + (gg[k] - S0[k]) * c0;
                    CY_T vk = S1[k] + (gg[k] * gg[k] - S1[k]) * c1;
                    S0[k] = mk;
                    S1[k] = vk;
                    P[k] = P[k] - (mk / (CY_SQRT(vk) + c2)) * c3;
                }
            else
                for (k = 0; k < m; k++) {
                    CY_T mk = S0[k] + (gg[k] - S0[k]) * c0;
                    CY_T vk = S1[k] + (gg[k] * gg[k] - S1[k]) * c1, h = S2[k];
                    h = (h > vk || h != h) ? h : vk;     /* np.maximum: NaN wins */
                    S0[k] = mk;
                    S1[k] = vk;
                    S2[k] = h;
                    P[k] = P[k] - (mk / (CY_SQRT(h) + c2)) * c3;
                }
            break;
        }
    }
}
