# Reference fits of R flexmix for tests/test_flexmix_reference.py.
#
#   Rscript tests/data/flexmix/make_reference.R [OUT_DIR]
#
# Reads <name>.csv (columns x1..xd, y) beside this script and writes <name>.flexmix.json
# (to OUT_DIR, default: beside this script). Each set is fitted with
#   flexmix(y ~ x1 + ..., k, model = FLXMRglm(), concomitant = FLXPmultinom(~ x1 + ...))
# from 5 k-means starts (the cluster labels of kmeans(scale(cbind(x, y)), k) as flexmix's
# `cluster`; set.seed(1) once per set), tolerance 1e-12, iter.max 20000, minprior = 0 (no component is
# removed); the start with the highest log-likelihood is reported, with refit()'s standard
# errors (BFGS on the observed log-likelihood at the EM fit).
#
# Needs R with the flexmix and jsonlite packages (Debian/Ubuntu:
# apt-get install r-base-core r-cran-flexmix r-cran-jsonlite).

suppressPackageStartupMessages({
  library(flexmix)
  library(jsonlite)
})

script_dir <- function() {
  arg <- grep("^--file=", commandArgs(trailingOnly = FALSE), value = TRUE)
  if (length(arg) == 1) dirname(normalizePath(sub("^--file=", "", arg))) else getwd()
}

SETS <- c(k2d1 = 2L, k3d1 = 3L, k2d2 = 2L)
N_STARTS <- 5L
CONTROL <- list(iter.max = 20000L, tolerance = 1e-12, minprior = 0)

here <- script_dir()
args <- commandArgs(trailingOnly = TRUE)
out_dir <- if (length(args) >= 1) args[1] else here
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)

elapsed <- function() proc.time()[["elapsed"]]

fit_set <- function(name, k) {
  dat <- read.csv(file.path(here, paste0(name, ".csv")))
  covs <- setdiff(names(dat), "y")
  rhs <- paste(covs, collapse = " + ")
  model_formula <- as.formula(paste("y ~", rhs))
  gate_formula <- as.formula(paste("~", rhs))
  n <- nrow(dat)
  p <- length(covs) + 1L  # coefficients per expert: intercept and slopes

  set.seed(1)
  starts <- list()
  best <- NULL
  best_time <- NA_real_
  t_total <- elapsed()
  for (s in seq_len(N_STARTS)) {
    cluster <- kmeans(scale(as.matrix(dat[c(covs, "y")])), centers = k)$cluster
    t0 <- elapsed()
    fit <- tryCatch(
      flexmix(model_formula, data = dat, k = k, cluster = cluster, model = FLXMRglm(),
              concomitant = FLXPmultinom(gate_formula), control = CONTROL),
      error = function(e) NULL)
    dt <- elapsed() - t0
    if (is.null(fit)) {
      starts[[s]] <- list(ok = FALSE, time_s = dt)
      next
    }
    ll <- as.numeric(logLik(fit))
    starts[[s]] <- list(ok = TRUE, loglik = ll, iterations = fit@iter,
                        converged = fit@converged, k_fitted = fit@k, time_s = dt)
    if (fit@k == k && (is.null(best) || ll > as.numeric(logLik(best)))) {
      best <- fit
      best_time <- dt
    }
  }
  t_total <- elapsed() - t_total
  stopifnot(!is.null(best))

  experts <- parameters(best)                        # rows coef.(Intercept), coef.x.., sigma
  gate <- parameters(best, which = "concomitant")   # rows (Intercept), x..; column 1 = reference
  sigma <- unname(experts["sigma", ])
  # flexmix's Gaussian M-step divides the weighted residual sum of squares by n - p (glm's
  # dispersion with prior weights scaled to mean 1); the exact MLE divides by n.
  sigma_mle <- sigma * sqrt((n - p) / n)

  t0 <- elapsed()
  se <- tryCatch({
    rf <- refit(best)
    list(ok = TRUE, time_s = elapsed() - t0,
         note = paste("refit(): BFGS on observed log-lik from the EM fit, vcov = -solve(Hessian);",
                      "names follow flexmix (sigma is on the log scale in FLXgetParameters)"),
         names = names(rf@coef), coef = unname(rf@coef), se = unname(sqrt(diag(rf@vcov))))
  }, error = function(e) list(ok = FALSE, error = conditionMessage(e)))

  call <- sprintf("flexmix(%s, k=%d, model=FLXMRglm(), concomitant=FLXPmultinom(~%s))",
                  paste("y ~", rhs), k, rhs)
  list(
    n = n, d = length(covs), k = k, seed = 1L, covariates = I(covs),
    R = R.version.string,
    layout = paste("gate$coef[[j]] = c(intercept, slopes) of component j's logit",
                   "(component 1 = reference, zeros); experts$coef[[j]] = c(intercept, slopes)"),
    fits = list(list(
      method = "flexmix", version = as.character(packageVersion("flexmix")), call = call,
      init = "kmeans", nrep = N_STARTS,
      control = list(iter_max = CONTROL$iter.max, tolerance = CONTROL$tolerance,
                     minprior = CONTROL$minprior),
      ok = TRUE, k_fitted = best@k, loglik = as.numeric(logLik(best)),
      iterations = best@iter, converged = best@converged, df = attr(logLik(best), "df"),
      AIC = AIC(best), BIC = BIC(best), ICL = ICL(best),
      prior_mean = unname(prior(best)),
      gate = list(coef = lapply(seq_len(k), function(j) unname(gate[, j])), reference = 1L),
      experts = list(coef = lapply(seq_len(k), function(j) unname(experts[seq_len(p), j])),
                     sigma = sigma, sigma_mle = sigma_mle),
      time_best_start_s = best_time, time_total_s = t_total,
      starts = starts, se = se)))
}

for (name in names(SETS)) {
  res <- fit_set(name, SETS[[name]])
  path <- file.path(out_dir, paste0(name, ".flexmix.json"))
  writeLines(toJSON(res, auto_unbox = TRUE, digits = NA, pretty = TRUE), path)
  cat(sprintf("%s: loglik %.10f in %d iterations -> %s\n", name, res$fits[[1]]$loglik,
              res$fits[[1]]$iterations, path))
}
