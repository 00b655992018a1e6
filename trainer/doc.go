// Package trainer holds user×item implicit-feedback data, trains implicit
// alternating least squares (iALS) models on it, folds new users into a
// trained model, and evaluates models with full-ranking recall and NDCG.
//
// The model follows Hu, Koren and Volinsky (2008), "Collaborative Filtering
// for Implicit Feedback Datasets", with the unobserved weight and the
// frequency-scaled regularization of Rendle et al. (2022), "Revisiting the
// Performance of iALS on Item Recommendation Benchmarks". For user u with
// observed items S_u, event weights r_ui and item factors Y it minimises
//
//	Σ_{i∈S_u} (α0 + α·r_ui)(1 − x_u·y_i)² + Σ_{i∉S_u} α0 (x_u·y_i)² + λ_u‖x_u‖²
//
// (and symmetrically for items), where α0 is Options.Unobserved, α is
// Options.Alpha and λ_u = Reg·(|S_u| + α0·|I|)^RegExponent. Each row update
// solves (α0·YᵀY + Σ_{i∈S_u} α·r_ui·y_i y_iᵀ + λ_u I) x_u = Σ_{i∈S_u} (α0 + α·r_ui) y_i,
// with the Gramian YᵀY computed once per half sweep.
package trainer
