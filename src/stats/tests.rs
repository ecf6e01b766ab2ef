//! Every figure against a value computed by hand.

use super::*;

fn close(actual: &[f64], expected: &[f64]) {
    assert_eq!(actual.len(), expected.len(), "{actual:?} vs {expected:?}");
    for (a, e) in actual.iter().zip(expected) {
        assert!((a - e).abs() < 1e-12, "{actual:?} vs {expected:?}");
    }
}

#[test]
fn two_successes_in_five() {
    // pass@2 = 1 − C(3,2)/C(5,2) = 1 − 3/10; pass@3 = 1 − C(3,3)/C(5,3) = 1 − 1/10;
    // pass@4 needs 4 failures out of 3: certain success.
    close(&pass_at_k(5, 2), &[0.4, 0.7, 0.9, 1.0, 1.0]);
    // pass^2 = C(2,2)/C(5,2) = 1/10; three successes out of two is impossible.
    close(&pass_hat_k(5, 2), &[0.4, 0.1, 0.0, 0.0, 0.0]);
}

#[test]
fn two_successes_in_four() {
    close(&pass_at_k(4, 2), &[0.5, 5.0 / 6.0, 1.0, 1.0]);
    close(&pass_hat_k(4, 2), &[0.5, 1.0 / 6.0, 0.0, 0.0]);
}

#[test]
fn no_success_and_all_successes_are_certain() {
    close(&pass_at_k(3, 0), &[0.0; 3]);
    close(&pass_hat_k(3, 0), &[0.0; 3]);
    close(&pass_at_k(3, 3), &[1.0; 3]);
    close(&pass_hat_k(3, 3), &[1.0; 3]);
    assert!(pass_at_k(0, 0).is_empty());
}

#[test]
fn large_n_stays_exact_where_factorials_would_overflow() {
    // With one success in n, pass@k = k/n; C(1000, 500) is far beyond f64.
    let n = 1000;
    let at = pass_at_k(n, 1);
    for k in [1, 2, 500, 999, 1000] {
        assert!((at[k - 1] - k as f64 / n as f64).abs() < 1e-9, "k={k}");
    }
    let hat = pass_hat_k(10_000, 5_000);
    assert!((hat[1] - 0.5 * 4999.0 / 9999.0).abs() < 1e-15);
    assert!(pass_hat_k(100_000, 99_999)
        .iter()
        .chain(&pass_at_k(100_000, 3))
        .all(|p| p.is_finite() && (0.0..=1.0).contains(p)));
}

#[test]
fn pass_at_one_is_the_success_rate() {
    for (n, c) in [(7, 3), (10, 10), (9, 0), (1, 1)] {
        let rate = c as f64 / n as f64;
        assert!((pass_at_k(n, c)[0] - rate).abs() < 1e-15);
        assert!((pass_hat_k(n, c)[0] - rate).abs() < 1e-15);
    }
}

#[test]
fn percentiles_interpolate_between_order_statistics() {
    assert_eq!(percentile(&[0.0, 10.0], 0.25), 2.5);
    assert_eq!(percentile(&[1.0, 2.0, 3.0], 0.5), 2.0);
    assert_eq!(percentile(&[4.0], 0.975), 4.0);
}

#[test]
fn the_bootstrap_is_reproducible_and_brackets_the_mean() {
    let values = [0.0, 0.2, 0.5, 1.0, 1.0, 0.3];
    let ci = bootstrap_mean(&values).unwrap();
    assert_eq!(
        bootstrap_mean(&values),
        Some(ci),
        "same data, same interval"
    );
    let m = mean(&values).unwrap();
    assert!(ci.low < m && m < ci.high, "{ci:?} around {m}");
    assert!(ci.low >= 0.0 && ci.high <= 1.0);
    assert_eq!(bootstrap_mean(&[]), None);
    assert_eq!(
        bootstrap_mean(&[0.7, 0.7]),
        Some(Interval {
            low: 0.7,
            high: 0.7
        })
    );
}

#[test]
fn the_bootstrap_of_two_values_spans_both() {
    // Resample means of [0, 1] are 0, ½ or 1 with probabilities ¼, ½, ¼: far more than
    // 2.5% of them are 0 and 1, so the percentile interval is [0, 1].
    assert_eq!(
        bootstrap_mean(&[0.0, 1.0]),
        Some(Interval {
            low: 0.0,
            high: 1.0
        })
    );
}

#[test]
fn a_task_counts_attempts_and_full_credit_successes() {
    let t = task_figures(&[1.0, 0.0, 0.5, 1.0, 0.0]);
    assert_eq!((t.attempts, t.successes), (5, 2), "0.5 is not a success");
    assert!((t.mean_score.unwrap() - 0.5).abs() < 1e-15);
    close(&t.pass_at_k, &[0.4, 0.7, 0.9, 1.0, 1.0]);
    let empty = task_figures(&[]);
    assert_eq!(empty.mean_score, None);
    assert_eq!(empty.mean_score_ci, None);
    assert!(empty.pass_at_k.is_empty());
}

#[test]
fn overall_figures_average_tasks_and_each_k_only_over_tasks_with_that_many_attempts() {
    let a = task_figures(&[1.0, 0.0]); // n=2, c=1
    let b = task_figures(&[1.0; 4]); // n=4, c=4
    let none = task_figures(&[]);
    let o = overall_figures(&[a, b, none]);
    let m = o.mean_score.unwrap();
    assert_eq!((m.value, m.tasks), (0.75, 2), "macro average of ½ and 1");
    assert_eq!(
        m.ci,
        Interval {
            low: 0.5,
            high: 1.0
        }
    );
    let at: Vec<(f64, usize)> = o.pass_at_k.iter().map(|x| (x.value, x.tasks)).collect();
    // pass@1: (½ + 1)/2; pass@2: both certain; pass@3 and pass@4: b alone.
    assert_eq!(at, [(0.75, 2), (1.0, 2), (1.0, 1), (1.0, 1)]);
    let hat: Vec<(f64, usize)> = o.pass_hat_k.iter().map(|x| (x.value, x.tasks)).collect();
    // pass^2 of a = C(1,2)/C(2,2) = 0.
    assert_eq!(hat, [(0.75, 2), (0.5, 2), (1.0, 1), (1.0, 1)]);
    assert_eq!(
        o.pass_hat_k[2].ci,
        Interval {
            low: 1.0,
            high: 1.0
        }
    );
}

#[test]
fn a_run_without_attempts_has_no_figures() {
    let o = overall_figures(&[task_figures(&[])]);
    assert_eq!(o.mean_score, None);
    assert!(o.pass_at_k.is_empty() && o.pass_hat_k.is_empty());
}

#[test]
fn a_paired_difference_is_distinguishable_only_when_its_interval_excludes_zero() {
    let better = paired(&[1.0, 1.0, 1.0]);
    assert_eq!(better.mean_difference, Some(1.0));
    assert!(better.distinguishable);
    let same = paired(&[0.0, 0.0]);
    assert_eq!(
        same.ci,
        Some(Interval {
            low: 0.0,
            high: 0.0
        })
    );
    assert!(!same.distinguishable);
    let mixed = paired(&[0.5, -0.5, 0.25, -0.25]);
    assert_eq!(mixed.mean_difference, Some(0.0));
    assert!(!mixed.distinguishable);
    let worse = paired(&[-0.5, -0.4, -0.6, -0.5, -0.45]);
    assert!(worse.distinguishable && worse.ci.unwrap().high < 0.0);
    let nothing = paired(&[]);
    assert_eq!((nothing.mean_difference, nothing.ci), (None, None));
    assert!(!nothing.distinguishable);
}
