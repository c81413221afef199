# Blue/green deployments of core-service through CodeDeploy, so a bad
# release reaches a tenth of the fans for a few minutes rather than all of
# them. A deployment starts new
# tasks (green) beside the running ones (blue), sends the test listener
# (8443) to them, then moves 10 % of the fans' traffic, waits
# var.canary_minutes while the rollback alarms watch, and moves the rest.
# Blue keeps running for var.blue_termination_minutes, so a rollback is one
# listener change.
#
# queue-service deploys by rolling update instead (services.tf), guarded by
# the circuit breaker and the same rollback alarms. Part of its traffic is
# core-service's gRPC, which reaches its tasks through service discovery
# rather than the load balancer, so a listener switch could not hold new
# tasks back from it anyway.

data "aws_iam_policy_document" "codedeploy_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["codedeploy.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "codedeploy" {
  name               = "${local.name}-codedeploy"
  assume_role_policy = data.aws_iam_policy_document.codedeploy_assume.json
}

resource "aws_iam_role_policy_attachment" "codedeploy" {
  role       = aws_iam_role.codedeploy.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AWSCodeDeployRoleForECS"
}

resource "aws_codedeploy_app" "onsale" {
  name             = local.name
  compute_platform = "ECS"
}

# CodeDeploy's canaries move a share of the traffic once and then the rest.
resource "aws_codedeploy_deployment_config" "canary" {
  deployment_config_name = "${local.name}-canary-10-percent"
  compute_platform       = "ECS"
  traffic_routing_config {
    type = "TimeBasedCanary"
    time_based_canary {
      percentage = 10
      interval   = var.canary_minutes
    }
  }
}

resource "aws_codedeploy_deployment_group" "service" {
  for_each               = aws_ecs_service.blue_green
  app_name               = aws_codedeploy_app.onsale.name
  deployment_group_name  = each.key
  service_role_arn       = aws_iam_role.codedeploy.arn
  deployment_config_name = aws_codedeploy_deployment_config.canary.deployment_config_name

  deployment_style {
    deployment_option = "WITH_TRAFFIC_CONTROL"
    deployment_type   = "BLUE_GREEN"
  }

  blue_green_deployment_config {
    deployment_ready_option {
      action_on_timeout = "CONTINUE_DEPLOYMENT"
    }
    terminate_blue_instances_on_deployment_success {
      action                           = "TERMINATE"
      termination_wait_time_in_minutes = var.blue_termination_minutes
    }
  }

  ecs_service {
    cluster_name = aws_ecs_cluster.onsale.name
    service_name = each.value.name
  }

  load_balancer_info {
    target_group_pair_info {
      prod_traffic_route {
        listener_arns = [aws_lb_listener.https.arn]
      }
      test_traffic_route {
        listener_arns = [aws_lb_listener.test.arn]
      }
      target_group {
        name = aws_lb_target_group.service["${each.key}-blue"].name
      }
      target_group {
        name = aws_lb_target_group.service["${each.key}-green"].name
      }
    }
  }

  # A deployment whose tasks fail, or that trips a rollback alarm while the
  # canary runs, goes back to blue.
  auto_rollback_configuration {
    enabled = true
    events  = ["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM"]
  }
  alarm_configuration {
    enabled = true
    alarms  = local.rollback_alarms
  }
}
