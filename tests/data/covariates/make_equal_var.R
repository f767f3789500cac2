# Reference fits of a mixture of regressions with one common variance, by R mixtools.
#
#   Rscript tests/data/covariates/make_equal_var.R [nrep]     # from the repository root
#
# Writes tests/data/covariates/npreg_eqvar.mixtools.json: for k = 2, 3, regmixEM(yn, x, k,
# arbvar = FALSE) on flexmix's NPreg data (the columns of npreg_poly.csv): constant mixing
# proportions (no gate covariates), one variance for every component. regmixEM's sigma is the
# maximum-likelihood one, so its log-likelihood is the exact maximum of its basin.

suppressPackageStartupMessages({
  library(mixtools)
  library(flexmix)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = TRUE)
NREP <- if (length(args) >= 1) as.integer(args[1]) else 30L
SEED0 <- 41000L
OUT <- file.path("tests", "data", "covariates")
if (!dir.exists(OUT)) stop("run from the repository root (", OUT, " not found)")
data("NPreg", package = "flexmix")

fit_k <- function(k) {
  lls <- rep(-Inf, NREP)
  best <- NULL
  for (rep in seq_len(NREP)) {
    set.seed(SEED0 + 1000L * k + rep)
    invisible(capture.output(m <- tryCatch(
      regmixEM(NPreg$yn, NPreg$x, k = k, arbvar = FALSE, epsilon = 1e-12, maxit = 20000L),
      error = function(e) NULL)))
    if (is.null(m)) next
    lls[rep] <- m$loglik
    if (is.null(best) || m$loglik > best$loglik) best <- m
  }
  list(k = k, n_starts = NREP, n_ok = sum(is.finite(lls)), loglik = best$loglik,
       n_best = sum(abs(lls - best$loglik) < 1e-6), starts_loglik = lls,
       beta = unname(lapply(seq_len(k), function(j) unname(best$beta[, j]))),
       sigma = unname(best$sigma), lambda = unname(best$lambda))
}

rec <- list(name = "npreg_eqvar", data = "npreg_poly.csv (flexmix NPreg), columns x and yn",
            call = "regmixEM(yn, x, k, arbvar = FALSE, epsilon = 1e-12, maxit = 20000)",
            starts = sprintf("regmixEM's random starts, set.seed(%d + 1000 * k + rep), rep = 1..%d", SEED0, NREP),
            command = "Rscript tests/data/covariates/make_equal_var.R",
            versions = list(R = R.version.string, mixtools = as.character(packageVersion("mixtools")),
                            flexmix = as.character(packageVersion("flexmix"))),
            layout = "beta[[j]] = c(intercept, slope) of component j; sigma: the common standard deviation; lambda: mixing proportions",
            fits = lapply(2:3, fit_k))
writeLines(toJSON(rec, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null", na = "null"),
           file.path(OUT, "npreg_eqvar.mixtools.json"))
