# Reference fits of real data sets shipped in R packages, by R flexmix (many random starts).
#
#   Rscript tests/data/realdata/make_reference.R [nrep [NAME ...]]   # from the repository root
#
# Writes, for each data set NAME below, into tests/data/realdata/:
#   NAME.csv           the data (two columns: the covariate, then the response, as named in R)
#   NAME.flexmix.json  for k = 1..K: every start's log-likelihood, the distinct optima the starts
#                      reached (with the estimate of the first start reaching each) and the best
#                      one's refit() standard errors; provenance (R and package versions, seeds,
#                      the call)
# Then `python tests/data/realdata/polish.py` polishes each optimum to the exact maximum of the
# Gaussian log-likelihood (flexmix's variance is the weighted mean squared residual times
# n / (n - p), so its log-likelihood is slightly below the maximum) and writes NAME.reference.json.
#
# Model: flexmix(y ~ x, k, model = FLXMRglm(), concomitant = FLXPmultinom(~ x)) -- Gaussian
# linear experts and a multinomial-logit gate on the same covariate, as moetheory's softmax gate.
# Starts: flexmix's own (a random partition, posterior 0.9 / 0.1), one seed per start
# (set.seed(SEED0 + 1000 * k + rep)); each start is run separately (as stepFlexmix(nrep = ...)
# does, but keeping every start's result). Control: tolerance 1e-8 (relative change of the
# log-likelihood), iter.max 1000, minprior 0 (no component is removed: moetheory removes none).
# EM only has to bring a start into the basin of its optimum: polish.py finds the exact
# maximum (over-fitted fits crawl for 10^4 iterations, a minute a start, at tolerance 1e-10).

suppressPackageStartupMessages({
  library(flexmix)
  library(mixtools)
  library(MASS)
  library(sn)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = TRUE)
NREP <- if (length(args) >= 1) as.integer(args[1]) else 50L
SEED0 <- 20240L
CONTROL <- list(iter.max = 1000L, tolerance = 1e-8, minprior = 0)
OUT <- file.path("tests", "data", "realdata")
if (!dir.exists(OUT)) stop("run from the repository root (", OUT, " not found)")

env <- new.env()
data("tonedata", package = "mixtools", envir = env)
data("CO2data", package = "mixtools", envir = env)
data("NPreg", package = "flexmix", envir = env)
data("ais", package = "sn", envir = env)
data("mcycle", package = "MASS", envir = env)
data("Boston", package = "MASS", envir = env)
data("faithful", package = "datasets", envir = env)

# name, R object, package, covariate, response, largest k
SETS <- list(
  list(name = "tonedata", data = env$tonedata, package = "mixtools", x = "stretchratio", y = "tuned", kmax = 4),
  list(name = "co2data", data = env$CO2data, package = "mixtools", x = "GNP", y = "CO2", kmax = 3),
  list(name = "npreg", data = env$NPreg, package = "flexmix", x = "x", y = "yn", kmax = 4),
  list(name = "ais", data = env$ais, package = "sn", x = "BMI", y = "Bfat", kmax = 4),
  list(name = "mcycle", data = env$mcycle, package = "MASS", x = "times", y = "accel", kmax = 4),
  list(name = "faithful", data = env$faithful, package = "datasets", x = "eruptions", y = "waiting", kmax = 4),
  list(name = "boston", data = env$Boston, package = "MASS", x = "lstat", y = "medv", kmax = 4)
)

# Distinct optima: final log-likelihoods closer than this (nats) are grouped as one optimum;
# starts stopped by iter.max on a flat ridge can differ by more: polish.py merges groups whose
# polished maxima coincide.
SAME_OPTIMUM <- 1e-3

estimate <- function(m) {
  p <- parameters(m)                                   # rows: coef.(Intercept), coef.x, sigma
  g <- parameters(m, which = "concomitant")            # columns: components; rows: (Intercept), x
  list(
    expert_coef = unname(lapply(seq_len(ncol(p)), function(j) unname(p[1:2, j]))),
    sigma = unname(p["sigma", ]),
    gate_coef = unname(lapply(seq_len(ncol(g)), function(j) unname(g[, j]))),
    prior = unname(prior(m)),
    size = unname(colSums(posterior(m)))
  )
}

one_start <- function(d, k, seed) {
  set.seed(seed)
  t0 <- proc.time()[["elapsed"]]
  m <- tryCatch(
    flexmix(y ~ x, k = k, data = d, model = FLXMRglm(), concomitant = FLXPmultinom(~ x),
            control = CONTROL),
    error = function(e) e)
  elapsed <- proc.time()[["elapsed"]] - t0
  if (inherits(m, "error")) {
    return(list(rec = list(seed = seed, ok = FALSE, error = conditionMessage(m), time_s = elapsed), model = NULL))
  }
  ll <- as.numeric(logLik(m))
  rec <- list(seed = seed, ok = is.finite(ll) && m@k == k, loglik = ll, iterations = m@iter,
              converged = m@converged, k_fitted = m@k, min_size = min(colSums(posterior(m))),
              min_sigma = min(parameters(m)["sigma", ]), time_s = elapsed)
  list(rec = rec, model = m)
}

fit_k <- function(d, k) {
  starts <- vector("list", NREP)
  models <- vector("list", NREP)
  for (rep in seq_len(NREP)) {
    s <- one_start(d, k, SEED0 + 1000L * k + rep)
    starts[[rep]] <- s$rec
    models[[rep]] <- s$model
  }
  ll <- vapply(starts, function(s) if (isTRUE(s$ok)) s$loglik else -Inf, 0)
  ord <- order(-ll)
  optima <- list()
  for (i in ord) {
    if (!is.finite(ll[i])) next
    j <- Position(function(o) abs(o$loglik - ll[i]) < SAME_OPTIMUM, optima)
    if (is.na(j)) {
      optima[[length(optima) + 1]] <- c(list(loglik = ll[i], n_starts = 1L, first_seed = starts[[i]]$seed,
                                             iterations = starts[[i]]$iterations,
                                             converged = starts[[i]]$converged), estimate(models[[i]]))
    } else {
      optima[[j]]$n_starts <- optima[[j]]$n_starts + 1L
    }
  }
  best <- models[[ord[1]]]
  rf <- tryCatch(refit(best), error = function(e) e)
  refit_rec <- if (inherits(rf, "error")) list(ok = FALSE, error = conditionMessage(rf)) else {
    se <- sqrt(pmax(diag(rf@vcov), 0))
    se[diag(rf@vcov) < 0] <- NA
    list(ok = TRUE, names = names(rf@coef), coef = unname(rf@coef), se = unname(se),
         note = "flexmix refit(): optim (BFGS) on the exact log-likelihood from the EM estimate; parameters per component: coef.(Intercept), coef.x, log(sigma); gate: concomitant_Comp.j (j >= 2; component 1 is the reference)")
  }
  list(k = k, df = attr(logLik(best), "df"), n_starts = NREP,
       n_ok = sum(is.finite(ll)), best_loglik = max(ll),
       n_best = optima[[1]]$n_starts, optima = optima, refit = refit_rec,
       time_total_s = sum(vapply(starts, function(s) s$time_s, 0)), starts = starts)
}

versions <- list(R = R.version.string, flexmix = as.character(packageVersion("flexmix")),
                 mixtools = as.character(packageVersion("mixtools")), MASS = as.character(packageVersion("MASS")),
                 sn = as.character(packageVersion("sn")), jsonlite = as.character(packageVersion("jsonlite")))

if (length(args) >= 2) SETS <- Filter(function(s) s$name %in% args[-1], SETS)
for (s in SETS) {
  d <- data.frame(x = as.numeric(s$data[[s$x]]), y = as.numeric(s$data[[s$y]]))
  out_csv <- setNames(d, c(s$x, s$y))
  write.csv(out_csv, file.path(OUT, paste0(s$name, ".csv")), row.names = FALSE)
  fits <- lapply(seq_len(s$kmax), function(k) {
    message(sprintf("%s k=%d: %d starts", s$name, k, NREP))
    fit_k(d, k)
  })
  rec <- list(
    name = s$name, source = sprintf("R package %s, data set %s", s$package,
                                    switch(s$name, co2data = "CO2data", npreg = "NPreg", boston = "Boston", s$name)),
    n = nrow(d), x = s$x, y = s$y, versions = versions,
    command = "Rscript tests/data/realdata/make_reference.R",
    call = sprintf("flexmix(%s ~ %s, k, model = FLXMRglm(), concomitant = FLXPmultinom(~ %s), control = list(iter.max = 1000, tolerance = 1e-8, minprior = 0))",
                   s$y, s$x, s$x),
    starts = sprintf("flexmix's random partitions, set.seed(%d + 1000 * k + rep), rep = 1..%d", SEED0, NREP),
    same_optimum_nats = SAME_OPTIMUM,
    layout = "gate_coef[[j]] = c(intercept, slope) of component j's logit (component 1 = reference, zeros); expert_coef[[j]] = c(intercept, slope); sigma: flexmix's, whose square is the weighted mean squared residual times n / (n - 2) (the MLE's times n / (n - 2))",
    fits = fits)
  writeLines(toJSON(rec, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null", na = "null"),
             file.path(OUT, paste0(s$name, ".flexmix.json")))
}
